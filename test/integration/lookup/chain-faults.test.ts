/**
 * A broken DynamoDB never holds a batch past `lookup.deadline_ms` + 50 ms: the
 * chain answers with what memory and SQLite had. Also: a corrupt SQLite file
 * at start is rebuilt and the chain works.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { DynamoDbTier, createDynamoClient } from "../../../src/lookup/dynamodb-tier.js";
import { LookupChain } from "../../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { SqliteTier } from "../../../src/lookup/sqlite-tier.js";
import { FAKE_CREDENTIALS } from "../../helpers/dynalite.js";
import { ManualClock, positive } from "../../unit/lookup/contract.js";

const DEADLINE_MS = loadConfig().lookup.deadline_ms;
const MARGIN_MS = 50;

type Endpoint = { endpoint: string; close(): Promise<void> };

/** A port that was open a moment ago and now refuses connections. */
async function refusingEndpoint(): Promise<Endpoint> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return { endpoint: `http://127.0.0.1:${port}`, close: async () => undefined };
}

/** Accepts connections and never says a word. */
async function silentEndpoint(): Promise<Endpoint> {
  const sockets = new Set<Socket>();
  const s: Server = createNetServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => undefined);
    sock.on("close", () => sockets.delete(sock));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Answers every call with DynamoDB's throttling error. */
async function throttlingEndpoint(): Promise<Endpoint & { calls(): number }> {
  let calls = 0;
  const s = createHttpServer((req, res) => {
    req.resume();
    req.on("end", () => {
      calls++;
      res.writeHead(400, { "content-type": "application/x-amz-json-1.0" });
      res.end(
        JSON.stringify({
          __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
          message: "The level of configured provisioned throughput for the table was exceeded.",
        }),
      );
    });
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    calls: () => calls,
    close: async () => {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

describe("chain with a broken DynamoDB", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function chainAt(endpoint: string): Promise<{ chain: LookupChain; metrics: ReturnType<typeof createMetrics> }> {
    const clock = new ManualClock(Date.now());
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-faults-"));
    const metrics = createMetrics();
    const memory = new MemoryTier({ maxEntries: 1000, clock });
    const sqlite = SqliteTier.open({
      path: join(dir, "cache.sqlite"),
      maxRows: 1000,
      writeBatch: 100,
      flushIntervalMs: 60_000,
      queueMax: 1000,
      staleMaxS: 3600,
      clock,
      logger: silentLogger(),
    });
    memory.set([positive("1.1.1.1", clock)]);
    sqlite.set([positive("8.8.8.8", clock)]);
    sqlite.flushAll();
    const dynamo = new DynamoDbTier({
      client: createDynamoClient({ endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: 2000 }),
      table: "dnsgeo",
      staleMaxS: 3600,
      clock,
      logger: silentLogger(),
      callTimeoutMs: 2000,
      flushIntervalMs: 60_000,
      queueMax: 1000,
      ownsClient: true,
    });
    const chain = new LookupChain([memory, sqlite, dynamo], { logger: silentLogger(), metrics, clock });
    cleanups.push(async () => {
      await chain.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    });
    return { chain, metrics };
  }

  async function assertBounded(chain: LookupChain): Promise<void> {
    // Act: the caller's deadline, as the GeoService sets it.
    const started = performance.now();
    const got = await chain.get(["1.1.1.1", "8.8.8.8", "9.9.9.9"], { signal: AbortSignal.timeout(DEADLINE_MS) });
    const elapsed = performance.now() - started;
    // Assess: the answers memory and SQLite had, within the bound.
    expect([...got.keys()].sort()).toEqual(["1.1.1.1", "8.8.8.8"]);
    expect(elapsed).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  }

  it("refusing connections", async () => {
    const ep = await refusingEndpoint();
    const { chain, metrics } = await chainAt(ep.endpoint);
    await assertBounded(chain);
    const m = await metrics.registry.getSingleMetric("dnsgeo_tier_errors_total")?.get();
    expect(m?.values.find((v) => v.labels.tier === "dynamodb")?.value).toBe(1);
  });

  it("accepting and never answering", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const { chain, metrics } = await chainAt(ep.endpoint);
    await assertBounded(chain);
    await assertBounded(chain);
    const m = await metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get();
    expect(m?.values.find((v) => v.labels.tier === "dynamodb" && v.labels.outcome === "timeout")?.value).toBe(2);
  });

  it("throttling every call", async () => {
    const ep = await throttlingEndpoint();
    cleanups.push(() => ep.close());
    const { chain } = await chainAt(ep.endpoint);
    await assertBounded(chain);
    expect(ep.calls()).toBeGreaterThan(1);
  });

  it("the DynamoDB tier itself gives up on a silent endpoint when the signal aborts", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const tier = new DynamoDbTier({
      client: createDynamoClient({ endpoint: ep.endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: 5000 }),
      table: "dnsgeo",
      staleMaxS: 0,
      logger: silentLogger(),
      callTimeoutMs: 5000,
      flushIntervalMs: 60_000,
      queueMax: 10,
      ownsClient: true,
    });
    cleanups.push(() => tier.close());
    const started = performance.now();
    await expect(tier.get(["9.9.9.9"], { signal: AbortSignal.timeout(DEADLINE_MS) })).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  });

  it("the client's own request timeout ends a call to a silent endpoint even without a signal", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const tier = new DynamoDbTier({
      client: createDynamoClient({ endpoint: ep.endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: 200 }),
      table: "dnsgeo",
      staleMaxS: 0,
      logger: silentLogger(),
      callTimeoutMs: 10_000,
      flushIntervalMs: 60_000,
      queueMax: 10,
      ownsClient: true,
    });
    cleanups.push(() => tier.close());
    const started = performance.now();
    await expect(tier.get(["9.9.9.9"])).rejects.toThrow(/requestTimeout/);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("close() with a full write queue and a silent endpoint drops the writes after one timeout", async () => {
    // Prepare
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const metrics = createMetrics();
    const clock = new ManualClock(Date.now());
    const tier = new DynamoDbTier({
      client: createDynamoClient({ endpoint: ep.endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: 5000 }),
      table: "dnsgeo",
      staleMaxS: 0,
      clock,
      logger: silentLogger(),
      metrics,
      callTimeoutMs: 200,
      flushIntervalMs: 60_000,
      queueMax: 10_000,
      ownsClient: true,
    });
    tier.set(Array.from({ length: 1000 }, (_, i) => positive(`11.0.${i >> 8}.${i & 255}`, clock)));
    // Act
    const started = performance.now();
    await tier.close();
    // Assess: one wave of timed-out calls (200 ms), not 40 chunks × 200 ms.
    expect(performance.now() - started).toBeLessThan(1500);
    const m = await metrics.registry.getSingleMetric("dnsgeo_queue_dropped_total")?.get();
    expect(m?.values.find((v) => v.labels.queue === "dynamodb_write")?.value).toBe(1000);
  });
});

describe("corrupt SQLite file at start", () => {
  it("is moved aside and rebuilt, and the chain serves from it", async () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-corrupt-"));
    const path = join(dir, "dnsgeo.sqlite");
    writeFileSync(path, "this is not a database, just some bytes that are long enough ".repeat(100));
    const clock = new ManualClock();
    // Act
    const sqlite = SqliteTier.open({ path, maxRows: 100, writeBatch: 100, flushIntervalMs: 60_000, queueMax: 100, staleMaxS: 0, clock, logger: silentLogger() });
    const chain = new LookupChain([new MemoryTier({ maxEntries: 10, clock }), sqlite], { logger: silentLogger() });
    await chain.set([positive("8.8.8.8", clock)]);
    sqlite.flushAll();
    const fromDisk = new LookupChain([new MemoryTier({ maxEntries: 10, clock }), sqlite], { logger: silentLogger() });
    // Assess
    expect((await fromDisk.get(["8.8.8.8"])).get("8.8.8.8")?.geo?.city).toBe("Mountain View");
    expect(sqlite.isDegraded).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes(".corrupt-"))).toHaveLength(1);
    await chain.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
