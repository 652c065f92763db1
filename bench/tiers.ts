/**
 * Issue 4's scenarios: the whole pipeline (decode → … → encode, through the real
 * GeoService and chain) with every lookup a hit in one tier, as a ratio to the
 * same pipeline with no lookup at all, in the same run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../src/app.js";
import { loadConfig, type ConfigInput } from "../src/config.js";
import { createDynamoClient, createTable } from "../src/lookup/dynamodb-tier.js";
import type { GeoService, IpResult } from "../src/lookup/lookup.js";
import { Enricher } from "../src/pipeline/enrich.js";
import { compareRates, roundSpread } from "./measure.js";
import { cacheEntries } from "./data.js";
import { batches, type ScenarioResult } from "./pipeline.js";

const DISTINCT = 2000;

/** No lookup at all: every IP comes back final and unknown at once. */
class NoLookup implements GeoService {
  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const m = new Map<string, IpResult>();
    for (const ip of ips) m.set(ip, { final: true });
    return m;
  }
  async close(): Promise<void> {}
}

/** dynalite in a child process (bench/dynalite-child.ts). */
async function startDynalite(): Promise<{ endpoint: string; close(): Promise<void> }> {
  const child = fork(fileURLToPath(new URL("./dynalite-child.js", import.meta.url)), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: { port?: number }) => (m.port ? resolve(m.port) : reject(new Error("dynalite did not start"))));
    child.once("exit", () => reject(new Error("dynalite exited")));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.disconnect();
      await exited;
    },
  };
}

const OFFLINE: ConfigInput = { ipapi: { enabled: false }, mmdb: { enabled: false }, lookup: { deadline_ms: 1000 } };

/**
 * An app whose cache answers every bench IP. Persistent tiers are filled by a
 * first app that is then closed (which flushes its write-behind queue), so no
 * background writes run while the second app is measured and every hit really
 * comes from the file or the table, not from the queue.
 */
async function filled(overrides: ConfigInput, deps: Parameters<typeof createApp>[1] = {}, persistent = true): Promise<App> {
  const all = cacheEntries(DISTINCT);
  const writer = await createApp(loadConfig({ overrides }), deps);
  await writer.cache.set(all);
  if (!persistent) return writer;
  await writer.close();
  const app = await createApp(loadConfig({ overrides }), deps);
  const got = await app.cache.get(all.map((e) => e.ip));
  if (got.size !== all.length) throw new Error(`cache holds ${got.size} of ${all.length} entries`);
  return app;
}

export async function benchTiers(): Promise<ScenarioResult[]> {
  const bodies = batches(20_000, 100, DISTINCT);
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-bench-"));
  const dyn = await startDynalite();
  const client = createDynamoClient({ endpoint: dyn.endpoint, region: "us-east-1", connectTimeoutMs: 1000, requestTimeoutMs: 5000, credentials: { accessKeyId: "x", secretAccessKey: "x" } });
  await createTable(client, "dnsgeo-bench");
  const none = new Enricher({ geo: new NoLookup(), config: loadConfig({ overrides: OFFLINE }) });
  const memory = await filled({ ...OFFLINE, cache: { sqlite: { enabled: false } } }, {}, false);
  const sqlite = await filled({ ...OFFLINE, data_dir: dir, cache: { memory: { enabled: false } } });
  // Default tiers after a restart: memory empty, the SQLite file warm. Memory is
  // emptied at the start of every pass over the records, so each distinct IP is
  // read from the file once per pass and from memory after that.
  const restart = await filled({ ...OFFLINE, data_dir: join(dir, "restart") });
  const dynamo = await filled({ ...OFFLINE, cache: { memory: { enabled: false }, sqlite: { enabled: false } }, dynamodb: { table: "dnsgeo-bench", endpoint: dyn.endpoint } }, { dynamoClient: client });
  let i = 0;
  const run = (e: Enricher, expectEnriched: boolean) => async (): Promise<number> => {
    const res = await e.enrichBody(bodies[i++ % bodies.length] as Buffer, { contentType: "application/x-ndjson" });
    if (expectEnriched && res.counts.enriched !== 100) throw new Error(`expected all hits, got ${JSON.stringify(res.counts)}`);
    return 100;
  };
  let pass = 0;
  const restartRun = async (): Promise<number> => {
    if (pass % bodies.length === 0) restart.memory?.clear();
    const res = await restart.enricher.enrichBody(bodies[pass++ % bodies.length] as Buffer, { contentType: "application/x-ndjson" });
    if (res.counts.enriched !== 100) throw new Error(`expected all hits, got ${JSON.stringify(res.counts)}`);
    return 100;
  };
  try {
    const [base, mem, sql, rs] = await compareRates([
      { name: "none", fn: run(none, false) },
      { name: "memory", fn: run(memory.enricher, true) },
      { name: "sqlite", fn: run(sqlite.enricher, true) },
      { name: "restart", fn: restartRun },
    ]);
    // dynalite is far slower than DynamoDB (a JS server, in a child process on the same two
    // cores): shorter rounds, reported only — once on this process's CPU (dnsgeo's own cost
    // per record, SDK included) and once on the wall clock (waiting for dynalite included).
    const dySubjects = [
      { name: "none", fn: run(none, false) },
      { name: "dynamodb", fn: run(dynamo.enricher, true) },
    ];
    const [base2, dy] = await compareRates(dySubjects, { rounds: 3 });
    const [base3, dyWall] = await compareRates(dySubjects, { rounds: 3, clock: "wall" });
    const b = base?.perS ?? 0;
    const b2 = base2?.perS ?? 0;
    return [
      { scenario: "pipeline, all hits in memory", recordsPerS: mem?.perS ?? 0, baseline: "pipeline, no lookup", baselinePerS: b, ratio: (mem?.perS ?? 0) / b, spread: roundSpread(mem?.rounds ?? [], base?.rounds ?? []), goal: 0.9 },
      { scenario: "pipeline, all hits in SQLite (memory tier off)", recordsPerS: sql?.perS ?? 0, baseline: "pipeline, no lookup", baselinePerS: b, ratio: (sql?.perS ?? 0) / b, spread: roundSpread(sql?.rounds ?? [], base?.rounds ?? []), goal: 0.75 },
      {
        scenario: `pipeline after a restart: memory empty at the start of each pass over ${bodies.length * 100} records (${DISTINCT} IPs), SQLite warm`,
        recordsPerS: rs?.perS ?? 0,
        baseline: "pipeline, no lookup",
        baselinePerS: b,
        ratio: (rs?.perS ?? 0) / b,
        spread: roundSpread(rs?.rounds ?? [], base?.rounds ?? []),
      },
      { scenario: "pipeline, all hits in DynamoDB (dynalite in a child process, memory and SQLite off): dnsgeo's CPU", recordsPerS: dy?.perS ?? 0, baseline: "pipeline, no lookup", baselinePerS: b2, ratio: (dy?.perS ?? 0) / b2 },
      {
        scenario: "pipeline, all hits in DynamoDB (dynalite): wall clock, waiting for dynalite included",
        recordsPerS: dyWall?.perS ?? 0,
        baseline: "pipeline, no lookup (wall clock)",
        baselinePerS: base3?.perS ?? 0,
        ratio: (dyWall?.perS ?? 0) / (base3?.perS ?? 1),
      },
    ];
  } finally {
    await memory.close();
    await sqlite.close();
    await restart.close();
    await dynamo.close();
    client.destroy();
    await dyn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
