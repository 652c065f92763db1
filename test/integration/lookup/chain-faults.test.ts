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
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../../src/observability/metrics.js";
import { DynamoDbTier, createDynamoClient } from "../../../src/lookup/dynamodb-tier.js";
import { LookupChain } from "../../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { SqliteTier } from "../../../src/lookup/sqlite-tier.js";
import { FAKE_CREDENTIALS } from "../../helpers/dynalite.js";
import { DEADLINE_MS, MARGIN_MS, chainBehindLocal, expectLocalAnswersInTime } from "../../helpers/lookup-tiers.js";
import { ManualClock, positive } from "../../unit/lookup/contract.js";


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

/**
 * A DynamoDbTier on table "dnsgeo" at `endpoint`, with a client of its own (connect
 * timeout 1 s, fake credentials); `o` gives the request and call timeouts, the write
 * queue, staleness (0 when absent), the clock and metrics.
 */
function tierAt(
  endpoint: string,
  o: { requestTimeoutMs: number; callTimeoutMs: number; queueMax: number; staleMaxS?: number; clock?: ManualClock; metrics?: Metrics },
): DynamoDbTier {
  return new DynamoDbTier({
    client: createDynamoClient({ endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: o.requestTimeoutMs }),
    table: "dnsgeo",
    staleMaxS: o.staleMaxS ?? 0,
    clock: o.clock,
    logger: silentLogger(),
    metrics: o.metrics,
    callTimeoutMs: o.callTimeoutMs,
    flushIntervalMs: 60_000,
    queueMax: o.queueMax,
    ownsClient: true,
  });
}

describe("chain with a broken DynamoDB", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function chainAt(endpoint: string): Promise<{ chain: LookupChain; metrics: Metrics }> {
    const c = await chainBehindLocal("dnsgeo-faults-", (clock) => tierAt(endpoint, { requestTimeoutMs: 2000, callTimeoutMs: 2000, queueMax: 1000, staleMaxS: 3600, clock }));
    cleanups.push(c.close);
    return c;
  }

  it("refusing connections", async () => {
    const ep = await refusingEndpoint();
    const { chain, metrics } = await chainAt(ep.endpoint);
    await expectLocalAnswersInTime(chain);
    const m = await metrics.registry.getSingleMetric("dnsgeo_tier_errors_total")?.get();
    expect(m?.values.find((v) => v.labels.tier === "dynamodb")?.value).toBe(1);
  });

  it("accepting and never answering", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const { chain, metrics } = await chainAt(ep.endpoint);
    await expectLocalAnswersInTime(chain);
    await expectLocalAnswersInTime(chain);
    const m = await metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get();
    expect(m?.values.find((v) => v.labels.tier === "dynamodb" && v.labels.outcome === "timeout")?.value).toBe(2);
  });

  it("throttling every call", async () => {
    const ep = await throttlingEndpoint();
    cleanups.push(() => ep.close());
    const { chain } = await chainAt(ep.endpoint);
    await expectLocalAnswersInTime(chain);
    expect(ep.calls()).toBeGreaterThan(1);
  });

  it("the DynamoDB tier itself gives up on a silent endpoint when the signal aborts", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const tier = tierAt(ep.endpoint, { requestTimeoutMs: 5000, callTimeoutMs: 5000, queueMax: 10 });
    cleanups.push(() => tier.close());
    const started = performance.now();
    await expect(tier.get(["9.9.9.9"], { signal: AbortSignal.timeout(DEADLINE_MS) })).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  });

  it("the client's own request timeout ends a call to a silent endpoint even without a signal", async () => {
    const ep = await silentEndpoint();
    cleanups.push(() => ep.close());
    const tier = tierAt(ep.endpoint, { requestTimeoutMs: 200, callTimeoutMs: 10_000, queueMax: 10 });
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
    const tier = tierAt(ep.endpoint, { requestTimeoutMs: 5000, callTimeoutMs: 200, queueMax: 10_000, clock, metrics });
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
