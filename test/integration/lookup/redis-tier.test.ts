/**
 * The Redis tier against a real redis-server: what it stores (the item, its
 * TTL), that a batch is one pipelined read, and that a stopped, hung
 * (SIGSTOP), silent (a TCP server that never answers) or slow (DEBUG SLEEP)
 * server never holds a batch past `lookup.deadline_ms` + 50 ms: the chain
 * answers with what memory and SQLite had and counts the skip. Also the fleet
 * ip-api budget on Redis.
 */
import { rmSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../../src/observability/metrics.js";
import { LookupChain } from "../../../src/lookup/lookup-chain.js";
import { RedisFleetBudget } from "../../../src/lookup/redis-fleet-budget.js";
import { RedisTier, createRedisClient } from "../../../src/lookup/redis-tier.js";
import { NO_REDIS_REASON, findRedisServer, startHangingServer, startRedisServer, type RedisServer } from "../../helpers/redis-server.js";
import { hasOpenssl, makeTestCerts } from "../../helpers/certs.js";
import { DEADLINE_MS, chainBehindLocal, expectLocalAnswersInTime } from "../../helpers/lookup-tiers.js";
import { ManualClock, ipv4s, negative, positive } from "../../unit/lookup/contract.js";

const bin = findRedisServer();
let seq = 0;

describe.skipIf(!bin)(`redis tier${bin ? "" : ` (skipped: ${NO_REDIS_REASON})`}`, () => {
  let server: RedisServer;
  let admin: Redis;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  beforeAll(async () => {
    server = await startRedisServer(bin as string, ["--enable-debug-command", "yes"]);
    admin = new Redis(server.url, { lazyConnect: true });
    await admin.connect();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    admin.disconnect();
    await server.close();
  });

  function tier(url: string, clock: ManualClock, o: { commandTimeoutMs?: number; metrics?: Metrics } = {}): { tier: RedisTier; prefix: string } {
    const prefix = `t${++seq}:`;
    const t = new RedisTier({
      client: createRedisClient({ url, connectTimeoutMs: 1000, commandTimeoutMs: o.commandTimeoutMs ?? 2000 }),
      ownsClient: true,
      keyPrefix: prefix,
      staleMaxS: 3600,
      commandTimeoutMs: o.commandTimeoutMs ?? 2000,
      flushIntervalMs: 60_000,
      writeBatch: 100,
      queueMax: 1000,
      clock,
      logger: silentLogger(),
      ...(o.metrics ? { metrics: o.metrics } : {}),
    });
    cleanups.push(() => t.close());
    return { tier: t, prefix };
  }

  it("stores the shared item as JSON under prefix + IP, expiring when it can no longer be served even stale", async () => {
    const clock = new ManualClock(Date.now());
    const { tier: t, prefix } = tier(server.url, clock);
    await t.waitReady(2000);
    t.set([positive("8.8.8.8", clock, 600), negative("203.0.113.9", clock, 300), positive("9.9.9.9", clock, -3600)]);
    await t.flush();
    const item = JSON.parse((await admin.get(`${prefix}8.8.8.8`)) ?? "null") as Record<string, unknown>;
    expect(item).toMatchObject({ ip: "8.8.8.8", v: 1, src: "ip-api", expires_at: Math.floor(clock.ms / 1000) + 600 });
    expect((item.geo as Record<string, unknown>).asn).toBe(15169);
    const ttl = await admin.ttl(`${prefix}8.8.8.8`);
    expect(ttl).toBeGreaterThan(600 + 3600 - 5);
    expect(ttl).toBeLessThanOrEqual(600 + 3600);
    expect(JSON.parse((await admin.get(`${prefix}203.0.113.9`)) ?? "null")).toMatchObject({ neg: true, v: 1 });
    // Past its stale window already: not written at all.
    expect(await admin.exists(`${prefix}9.9.9.9`)).toBe(0);
  });

  it("reads a batch of 1 000 keys with one pipeline of MGETs and writes it with pipelined SETs", async () => {
    const clock = new ManualClock(Date.now());
    const { tier: t } = tier(server.url, clock);
    await t.waitReady(2000);
    const ips = ipv4s(1000, 7);
    t.set(ips.map((ip) => positive(ip, clock)));
    await t.flush();
    await admin.config("RESETSTAT");
    const got = await t.get(ips);
    const stats = await admin.info("commandstats");
    expect(got.size).toBe(1000);
    // 1 000 keys in chunks of 500: two MGETs sent together, and nothing else.
    expect(/cmdstat_mget:calls=(\d+)/.exec(stats)?.[1]).toBe("2");
    expect(stats).not.toMatch(/cmdstat_get:/);
  });

  it("AUTH from the URL: the right password reads and writes, a wrong one leaves the tier skipped", async () => {
    const guarded = await startRedisServer(bin as string, ["--requirepass", "s3cret"]);
    cleanups.push(() => guarded.close());
    const clock = new ManualClock(Date.now());
    const { tier: good } = tier(`redis://:s3cret@127.0.0.1:${guarded.port}`, clock);
    const { tier: bad } = tier(`redis://:wrong@127.0.0.1:${guarded.port}`, clock);
    expect(await good.waitReady(2000)).toBe(true);
    good.set([positive("8.8.8.8", clock)]);
    await good.flush();
    expect((await good.get(["8.8.8.8"])).size).toBe(1);
    expect(await bad.waitReady(300)).toBe(false);
    await expect(bad.get(["8.8.8.8"])).rejects.toThrow();
  });

  it.skipIf(!hasOpenssl())("rediss:// (TLS) with a private CA from ca_file, and user + password from the URL", async () => {
    const certs = makeTestCerts();
    cleanups.push(() => rmSync(certs.dir, { recursive: true, force: true }));
    const tls = await startRedisServer(bin as string, [
      "--tls-port", "0", "--requirepass", "pw",
      "--tls-cert-file", certs.serverCertFile, "--tls-key-file", certs.serverKeyFile, "--tls-ca-cert-file", certs.caFile, "--tls-auth-clients", "no",
    ], { tls: true });
    cleanups.push(() => tls.close());
    const clock = new ManualClock(Date.now());
    const client = createRedisClient({ url: `rediss://default:pw@localhost:${tls.port}`, connectTimeoutMs: 2000, commandTimeoutMs: 2000, caFile: certs.caFile });
    const t = new RedisTier({ client, ownsClient: true, keyPrefix: "tls:", staleMaxS: 60, commandTimeoutMs: 2000, flushIntervalMs: 60_000, writeBatch: 10, queueMax: 10, clock, logger: silentLogger() });
    cleanups.push(() => t.close());
    expect(await t.waitReady(3000)).toBe(true);
    t.set([positive("1.1.1.1", clock)]);
    await t.flush();
    expect((await t.get(["1.1.1.1"])).get("1.1.1.1")?.geo?.asn).toBe(15169);
    // Without the CA the server is not trusted: no connection, the tier is skipped.
    const untrusting = new RedisTier({
      client: createRedisClient({ url: `rediss://default:pw@localhost:${tls.port}`, connectTimeoutMs: 2000, commandTimeoutMs: 2000 }),
      ownsClient: true, keyPrefix: "tls:", staleMaxS: 60, commandTimeoutMs: 2000, flushIntervalMs: 60_000, writeBatch: 10, queueMax: 10, clock, logger: silentLogger(),
    });
    cleanups.push(() => untrusting.close());
    expect(await untrusting.waitReady(500)).toBe(false);
  });

  async function chainAt(url: string, commandTimeoutMs = 2000): Promise<{ chain: LookupChain; metrics: Metrics; tier: RedisTier }> {
    const c = await chainBehindLocal("dnsgeo-redis-faults-", async (clock, metrics) => {
      const { tier: redis } = tier(url, clock, { commandTimeoutMs, metrics });
      await redis.waitReady(1000);
      return redis;
    });
    cleanups.push(c.close);
    return { chain: c.chain, metrics: c.metrics, tier: c.remote };
  }

  async function skips(metrics: Metrics): Promise<number> {
    const m = await metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get();
    return (m?.values ?? [])
      .filter((v) => v.labels.tier === "redis" && (v.labels.outcome === "error" || v.labels.outcome === "timeout"))
      .reduce((a, v) => a + v.value, 0);
  }

  it("a stopped server: skipped at once and counted", async () => {
    const other = await startRedisServer(bin as string);
    cleanups.push(() => other.close());
    const { chain, metrics } = await chainAt(other.url);
    await other.stop();
    await expectLocalAnswersInTime(chain);
    await expectLocalAnswersInTime(chain);
    expect(await skips(metrics)).toBe(2);
  });

  it("a TCP server that never answers (never ready): skipped within the deadline and counted", async () => {
    const hang = await startHangingServer();
    cleanups.push(() => hang.close());
    const { chain, metrics } = await chainAt(hang.url);
    await expectLocalAnswersInTime(chain);
    await expectLocalAnswersInTime(chain);
    expect(await skips(metrics)).toBe(2);
  });

  it("a hung redis-server (SIGSTOP while connected): skipped within the deadline and counted", async () => {
    const other = await startRedisServer(bin as string);
    cleanups.push(() => other.close());
    const { chain, metrics } = await chainAt(other.url);
    other.pause();
    cleanups.push(() => other.resume());
    await expectLocalAnswersInTime(chain);
    await expectLocalAnswersInTime(chain);
    expect(await skips(metrics)).toBe(2);
  });

  it("a slow redis-server (DEBUG SLEEP longer than the deadline): skipped within the deadline and counted", async () => {
    const { chain, metrics } = await chainAt(server.url);
    const sleeper = new Redis(server.url, { lazyConnect: true });
    cleanups.push(() => sleeper.disconnect());
    await sleeper.connect();
    const slept = sleeper.call("DEBUG", "SLEEP", String((DEADLINE_MS * 3) / 1000));
    // The server is single-threaded: once it has taken the DEBUG SLEEP, it answers nothing else.
    await new Promise((r) => setTimeout(r, 20));
    await expectLocalAnswersInTime(chain);
    await slept;
    expect(await skips(metrics)).toBe(1);
    // Once the server answers again, so does the tier.
    await expectLocalAnswersInTime(chain);
    expect(await skips(metrics)).toBe(1);
  });

  it("command_timeout_ms ends a call to a hung server even without a caller's signal", async () => {
    const other = await startRedisServer(bin as string);
    cleanups.push(() => other.close());
    const { tier: t } = tier(other.url, new ManualClock(Date.now()), { commandTimeoutMs: 200 });
    await t.waitReady(2000);
    other.pause();
    cleanups.push(() => other.resume());
    const started = performance.now();
    await expect(t.get(["9.9.9.9"])).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(2000);
    // A flush to a hung server drops the batch after one timeout and counts it.
    t.set([positive("9.9.9.9", new ManualClock(Date.now()))]);
    await t.flush();
  });

  describe("fleet ip-api budget on Redis", () => {
    it("two processes share one counter per window; the window's budget is never exceeded", async () => {
      // Window of 60 s aligned to the epoch: [1 700 000 040, 1 700 000 100).
      const clock = new ManualClock(1_700_000_070_000);
      const prefix = `budget${++seq}:`;
      const mk = (): RedisFleetBudget => new RedisFleetBudget({ client: admin, keyPrefix: prefix, requestsPerWindow: 3, windowS: 60, callTimeoutMs: 1000, clock });
      const a = mk();
      const b = mk();
      const answers = await Promise.all([a.tryAcquire(), b.tryAcquire(), a.tryAcquire(), b.tryAcquire(), a.tryAcquire()]);
      expect(answers.filter((x) => x.ok)).toHaveLength(3);
      for (const x of answers.filter((y) => !y.ok)) expect(x.retryAtMs).toBe(1_700_000_100_000);
      const key = a.keyFor(1_700_000_070);
      expect(key).toBe(`${prefix}budget:1700000040`);
      expect(await admin.get(key)).toBe("5");
      const ttl = await admin.ttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(120);
      // The next window starts afresh.
      clock.ms += 60_000;
      expect((await a.tryAcquire()).ok).toBe(true);
    });

    it("answers yes (local budget only) when Redis is unreachable, within its timeout", async () => {
      const hang = await startHangingServer();
      cleanups.push(() => hang.close());
      const client = createRedisClient({ url: hang.url, connectTimeoutMs: 1000, commandTimeoutMs: 200 });
      cleanups.push(() => client.disconnect());
      const metrics = createMetrics();
      const budget = new RedisFleetBudget({ client, keyPrefix: "x:", requestsPerWindow: 1, windowS: 60, callTimeoutMs: 200, metrics });
      const started = performance.now();
      expect(await budget.tryAcquire()).toEqual({ ok: true });
      expect(performance.now() - started).toBeLessThan(1000);
      const m = await metrics.registry.getSingleMetric("dnsgeo_tier_errors_total")?.get();
      expect(m?.values.find((v) => v.labels.tier === "redis")?.value).toBe(1);
    });
  });
});
