/**
 * One scenario of `npm run bench:instructions`, run under valgrind by
 * bench/instructions.ts: a warm-up of 400 batches, then `measured` batches more.
 * The parent runs it twice (0 and N measured batches) and divides the
 * difference in instructions by the records, so start-up and warm-up cancel out.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp } from "../src/app.js";
import { loadConfig, type ConfigInput } from "../src/config.js";
import type { GeoService, IpResult } from "../src/lookup/lookup.js";
import { Enricher } from "../src/pipeline/enrich.js";
import { cacheEntries } from "./data.js";
import { batches } from "./pipeline.js";

export const SCENARIOS = ["json", "none", "memory", "sqlite"] as const;
export type Scenario = (typeof SCENARIOS)[number];

const OFFLINE: ConfigInput = { ipapi: { enabled: false }, mmdb: { enabled: false }, lookup: { deadline_ms: 1000 } };
const WARM_UP = 400;

/** Every IP comes back final and unknown at once (as in bench/tiers.ts). */
const noLookup: GeoService = {
  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const m = new Map<string, IpResult>();
    for (const ip of ips) m.set(ip, { final: true });
    return m;
  },
  async close(): Promise<void> {},
};

async function batchFn(scenario: Scenario, dataDir: string): Promise<(body: Buffer) => Promise<void>> {
  if (scenario === "json") {
    // The baseline of bench/pipeline.ts: parse and stringify every line, bytes to bytes.
    return async (body) => {
      const out: string[] = [];
      for (const l of body.toString("utf8").split("\n")) if (l !== "") out.push(JSON.stringify(JSON.parse(l)));
      Buffer.from(out.join("\n") + "\n");
    };
  }
  let enricher: Enricher;
  if (scenario === "none") enricher = new Enricher({ geo: noLookup, config: loadConfig({ overrides: OFFLINE }) });
  else {
    const overrides: ConfigInput =
      scenario === "memory" ? { ...OFFLINE, cache: { sqlite: { enabled: false } } } : { ...OFFLINE, data_dir: dataDir, cache: { memory: { enabled: false } } };
    let app = await createApp(loadConfig({ overrides }));
    await app.cache.set(cacheEntries(2000));
    if (scenario === "sqlite") {
      // Filled, closed and reopened: every hit is a read of the file (see bench/tiers.ts).
      await app.close();
      app = await createApp(loadConfig({ overrides }));
    }
    enricher = app.enricher;
  }
  return async (body) => {
    await enricher.enrichBody(body, { contentType: "application/x-ndjson" });
  };
}

async function main(): Promise<void> {
  const scenario = process.argv[2] as Scenario;
  const measured = Number(process.argv[3]);
  if (!SCENARIOS.includes(scenario) || !Number.isInteger(measured)) throw new Error("usage: instructions-child SCENARIO BATCHES");
  const bodies = batches(20_000, 100, 2000);
  const dataDir = mkdtempSync(join(tmpdir(), "dnsgeo-instr-"));
  const run = await batchFn(scenario, dataDir);
  for (let i = 0; i < WARM_UP + measured; i++) await run(bodies[i % bodies.length] as Buffer);
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
}

// Imported by bench/instructions.ts for SCENARIOS; runs only as the child.
if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
