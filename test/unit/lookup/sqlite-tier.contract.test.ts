import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testSqlite } from "../../helpers/lookup-tiers.js";
import { runLookupContract } from "./contract.js";

runLookupContract("sqlite", ({ clock, staleMaxS }) => {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-sqlite-"));
  const tier = testSqlite(join(dir, "cache.sqlite"), clock, { staleMaxS });
  return { lookup: tier, flush: () => tier.flushAll(), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
});
