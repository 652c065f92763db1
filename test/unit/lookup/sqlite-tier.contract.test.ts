import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../../src/observability/logger.js";
import { SqliteTier } from "../../../src/lookup/sqlite-tier.js";
import { runLookupContract } from "./contract.js";

runLookupContract("sqlite", ({ clock, staleMaxS }) => {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-sqlite-"));
  const tier = SqliteTier.open({
    path: join(dir, "cache.sqlite"),
    maxRows: 100_000,
    writeBatch: 500,
    flushIntervalMs: 60_000,
    queueMax: 10_000,
    staleMaxS,
    clock,
    logger: silentLogger(),
  });
  return { lookup: tier, flush: () => tier.flushAll(), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
});
