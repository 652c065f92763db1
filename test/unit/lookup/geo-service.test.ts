import { afterEach, describe, expect, it } from "vitest";
import { BackfillQueue } from "../../../src/lookup/backfill-queue.js";
import { DefaultGeoService, type BatchSource, type GeoServiceOptions } from "../../../src/lookup/geo-service.js";
import { ProviderError, type BatchResult } from "../../../src/lookup/ipapi-provider.js";
import type { Entry, Lookup } from "../../../src/lookup/lookup.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";
import { createMetrics } from "../../../src/observability/metrics.js";

const now = () => Math.floor(Date.now() / 1000);

function positive(ip: string, src = "ip-api", ageS = 0, ttlS = 1000): Entry {
  const t = now() - ageS;
  return { ip, geo: { ip, countryCode: src === "mmdb" ? "MM" : "IP", source: src, fetchedAt: t }, src, fetchedAt: t, expiresAt: t + ttlS };
}

/** An in-process provider: answers every IP (or `fail` ones negatively) after `delayMs`. */
class TestSource implements BatchSource {
  calls: string[][] = [];
  delayMs = 0;
  status = 200;
  throws: unknown;
  fail = new Set<string>();
  async fetchBatch(ips: string[]): Promise<BatchResult> {
    this.calls.push([...ips]);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- tests throw non-Error values on purpose
    if (this.throws) throw this.throws;
    if (this.status !== 200) return { entries: [], status: this.status, rl: 10, ttl: 1 };
    const t = now();
    return {
      status: 200,
      rl: 100,
      ttl: 60,
      entries: ips.map((ip) => (this.fail.has(ip) ? { ip, neg: true, src: "ip-api", fetchedAt: t, expiresAt: t + 100 } : positive(ip))),
    };
  }
  get sentIps(): string[] {
    return this.calls.flat();
  }
}

/** A fallback on a Map (stands in for mmdb). */
function mapLookup(entries: Entry[], name = "mmdb"): Lookup {
  const m = new Map(entries.map((e) => [e.ip, e]));
  return {
    name,
    get: (ips) => new Map(ips.flatMap((ip) => (m.has(ip) ? [[ip, m.get(ip) as Entry] as const] : []))),
    set: () => undefined,
    close: () => undefined,
  };
}

const services: DefaultGeoService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

function build(over: Partial<GeoServiceOptions> & { source?: TestSource | null; perWindow?: number; queueMax?: number } = {}) {
  const metrics = createMetrics();
  const cache = over.cache ?? new MemoryTier({ maxEntries: 10_000 });
  const source = over.source === null ? undefined : (over.source ?? new TestSource());
  let svc: DefaultGeoService | undefined;
  const opts: GeoServiceOptions = Object.assign(
    {
      cache,
      metrics,
      deadlineMs: 100,
      lingerMs: 5,
      batchSize: 100,
      staleMaxS: 30 * 86400,
      shutdownTimeoutMs: 500,
      limiter: new RateLimiter({ requestsPerWindow: over.perWindow ?? 100, windowS: 1, marginMs: 10, backoffBaseMs: 20, backoffMaxMs: 40 }),
      queue: new BackfillQueue({ max: over.queueMax ?? 10_000, metrics, onDrop: (ip) => svc?.dropped(ip) }),
    },
    over,
  );
  if (source) opts.provider = source;
  else delete opts.provider;
  svc = new DefaultGeoService(opts);
  services.push(svc);
  return { svc, source, cache, metrics };
}

describe("DefaultGeoService", () => {
  it("gives waiting callers the offline answer at once when the provider is unreachable, and keeps the IP queued", async () => {
    // Prepare: a provider that refuses connections, a slow backoff, and a caller that would wait
    const source = new TestSource();
    source.throws = new ProviderError("connect", "connect ECONNREFUSED");
    const { svc } = build({
      source,
      fallback: mapLookup([positive("8.8.8.8", "mmdb")]),
      limiter: new RateLimiter({ requestsPerWindow: 100, windowS: 1, marginMs: 10, backoffBaseMs: 60_000, backoffMaxMs: 60_000 }),
    });
    // Act
    const t0 = performance.now();
    const res = await svc.lookup(["8.8.8.8"], { wait: true });
    const took = performance.now() - t0;
    // Assess: one refused send, then the mmdb answer (not final) long before any retry could happen
    expect(source.calls).toHaveLength(1);
    expect(res.get("8.8.8.8")).toMatchObject({ final: false, entry: { src: "mmdb" } });
    expect(took).toBeLessThan(30_000);
    expect(svc.stats().queueDepth).toBe(1);
  });

  it("answers fresh cache hits as final without asking the provider", async () => {
    // Prepare
    const cache = new MemoryTier({ maxEntries: 10 });
    cache.set([positive("8.8.8.8")]);
    const { svc, source } = build({ cache });
    // Act
    const r = await svc.lookup(["8.8.8.8", "8.8.8.8"]);
    // Assess
    expect(r.get("8.8.8.8")).toMatchObject({ final: true, entry: { ip: "8.8.8.8", src: "ip-api" } });
    expect(r.size).toBe(1);
    expect(source?.calls).toEqual([]);
  });

  it("sends misses to the provider, answers within the deadline and writes through to the cache", async () => {
    // Prepare
    const { svc, source, cache } = build();
    // Act
    const first = await svc.lookup(["1.1.1.1", "9.9.9.9"]);
    const cached = await cache.get(["1.1.1.1", "9.9.9.9"]);
    const second = await svc.lookup(["1.1.1.1"]);
    // Assess
    expect(first.get("1.1.1.1")).toMatchObject({ final: true, entry: { src: "ip-api" } });
    expect(first.get("9.9.9.9")?.final).toBe(true);
    expect(cached.size).toBe(2);
    expect(second.get("1.1.1.1")?.final).toBe(true);
    expect(source?.calls).toEqual([["1.1.1.1", "9.9.9.9"]]);
  });

  it("gathers misses of concurrent lookups into batches of at most batchSize and never sends an IP twice", async () => {
    // Prepare
    const { svc, source } = build({ lingerMs: 20 });
    const a = Array.from({ length: 70 }, (_, i) => `11.0.0.${i}`);
    const b = Array.from({ length: 70 }, (_, i) => `11.0.0.${i + 40}`);
    // Act
    const [ra, rb] = await Promise.all([svc.lookup(a), svc.lookup(b)]);
    // Assess
    const sent = source?.sentIps ?? [];
    expect(new Set(sent).size).toBe(sent.length);
    expect(sent.length).toBe(110);
    expect(source?.calls.map((c) => c.length)).toEqual([100, 10]);
    expect([...ra.values(), ...rb.values()].every((x) => x.final)).toBe(true);
  });

  it("answers with the fallback at the deadline, keeps the IP queued and serves the provider's answer once it arrives", async () => {
    // Prepare
    const source = new TestSource();
    source.delayMs = 300;
    const { svc } = build({ source, fallback: mapLookup([positive("2.2.2.2", "mmdb")]) });
    // Act
    const started = Date.now();
    const r = await svc.lookup(["2.2.2.2", "3.3.3.3"]);
    const took = Date.now() - started;
    const drained = await svc.drain(2000);
    const later = await svc.lookup(["2.2.2.2", "3.3.3.3"]);
    // Assess
    expect(took).toBeLessThan(150);
    expect(r.get("2.2.2.2")).toMatchObject({ final: false, entry: { src: "mmdb" } });
    expect(r.get("3.3.3.3")).toEqual({ final: false });
    expect(drained).toBe(true);
    expect(later.get("2.2.2.2")).toMatchObject({ final: true, entry: { src: "ip-api" } });
    expect(later.get("3.3.3.3")?.final).toBe(true);
    expect(source.calls).toHaveLength(1);
  });

  it("prefers a stale cache entry over the fallback when the provider cannot answer in time", async () => {
    // Prepare
    const cache = new MemoryTier({ maxEntries: 10 });
    cache.set([positive("4.4.4.4", "ip-api", 2000, 1000)]);
    const source = new TestSource();
    source.throws = new Error("unreachable");
    const { svc } = build({ cache, source, fallback: mapLookup([positive("4.4.4.4", "mmdb")]) });
    // Act
    const r = await svc.lookup(["4.4.4.4"]);
    // Assess
    expect(r.get("4.4.4.4")).toMatchObject({ final: false, entry: { src: "ip-api", stale: true } });
  });

  it("at the deadline, asks the fallback for an IP whose stale entry is negative and serves its positive answer", async () => {
    // Prepare: a stale negative entry (ip-api did not know the IP a while ago); mmdb knows it now
    const cache = new MemoryTier({ maxEntries: 10 });
    const t = now() - 2000;
    cache.set([{ ip: "4.4.4.5", neg: true, src: "ip-api", fetchedAt: t, expiresAt: t + 1000 }]);
    const source = new TestSource();
    source.throws = new Error("unreachable");
    const { svc } = build({ cache, source, fallback: mapLookup([positive("4.4.4.5", "mmdb")]) });
    // Act
    const r = await svc.lookup(["4.4.4.5"]);
    // Assess
    expect(r.get("4.4.4.5")).toMatchObject({ final: false, entry: { src: "mmdb", geo: { countryCode: "MM" } } });
  });

  it("without a provider, the fallback answer is final and a miss is final with no entry", async () => {
    // Prepare
    const { svc } = build({ source: null, fallback: mapLookup([positive("5.5.5.5", "mmdb")]) });
    const { svc: bare } = build({ source: null });
    // Act
    const r = await svc.lookup(["5.5.5.5", "6.6.6.6"]);
    const none = await bare.lookup(["5.5.5.5"]);
    // Assess
    expect(r.get("5.5.5.5")).toMatchObject({ final: true, entry: { src: "mmdb" } });
    expect(r.get("6.6.6.6")).toEqual({ final: true });
    expect(none.get("5.5.5.5")).toEqual({ final: true });
  });

  it("caches fail answers as negative, final entries and does not ask again", async () => {
    // Prepare
    const source = new TestSource();
    source.fail.add("7.7.7.7");
    const { svc } = build({ source });
    // Act
    const first = await svc.lookup(["7.7.7.7"]);
    const second = await svc.lookup(["7.7.7.7"]);
    // Assess
    expect(first.get("7.7.7.7")).toMatchObject({ final: true, entry: { neg: true } });
    expect(second.get("7.7.7.7")).toMatchObject({ final: true, entry: { neg: true } });
    expect(source.calls).toHaveLength(1);
  });

  it("with wait: true waits past the deadline for the provider, however long the limiter makes it", async () => {
    // Prepare: one request per 1 s window, two batches needed.
    const { svc, source } = build({ perWindow: 1, batchSize: 1 });
    // Act
    const r = await svc.lookup(["12.0.0.1", "12.0.0.2"], { wait: true });
    // Assess
    expect([...r.values()].every((x) => x.final && x.entry?.src === "ip-api")).toBe(true);
    expect(source?.calls).toHaveLength(2);
  });

  it("never rejects: errors leave IPs without an entry, not final, counted", async () => {
    // Prepare
    const broken: Lookup = { name: "chain", get: () => Promise.reject(new Error("boom")), set: () => Promise.reject(new Error("boom")), close: () => undefined };
    const source = new TestSource();
    source.throws = new TypeError("bug");
    const { svc, metrics } = build({ cache: broken, source, deadlineMs: 50 });
    // Act
    const r = await svc.lookup(["13.0.0.1"]);
    // Assess
    expect(r.get("13.0.0.1")).toEqual({ final: false });
    const errs = (await metrics.tierErrors.get()).values;
    expect(errs.find((v) => v.labels.tier === "chain")?.value).toBeGreaterThanOrEqual(1);
  });

  it("releases waiting callers when the provider bans us (403)", async () => {
    // Prepare
    const source = new TestSource();
    source.status = 403;
    const { svc } = build({ source, fallback: mapLookup([positive("14.0.0.1", "mmdb")]) });
    // Act
    const r = await svc.lookup(["14.0.0.1"], { wait: true });
    const after = await svc.lookup(["14.0.0.1"], { wait: true });
    // Assess
    expect(r.get("14.0.0.1")).toMatchObject({ final: false, entry: { src: "mmdb" } });
    expect(after.get("14.0.0.1")?.final).toBe(false);
    expect(svc.stats().banned).toBe(true);
    expect(source.calls).toHaveLength(1);
  });

  it("gives waiting callers the offline answer after maxAttempts failed sends", async () => {
    // Prepare
    const source = new TestSource();
    source.status = 500;
    const { svc } = build({ source, maxAttempts: 2 });
    // Act
    const r = await svc.lookup(["15.0.0.1"], { wait: true });
    // Assess
    expect(r.get("15.0.0.1")).toEqual({ final: false });
    expect(source.calls.length).toBeGreaterThanOrEqual(2);
    expect(svc.stats().failedRequests).toBeGreaterThanOrEqual(2);
  });

  it("drops the oldest queued IP when the backfill queue is full, releasing its waiter", async () => {
    // Prepare: the limiter is exhausted, so nothing leaves the queue.
    const { svc } = build({ perWindow: 1, queueMax: 1, batchSize: 1 });
    await svc.lookup(["16.0.0.1"]);
    // Act
    const waiting = svc.lookup(["16.0.0.2"], { wait: true });
    await svc.lookup(["16.0.0.3"]);
    const r = await waiting;
    // Assess
    expect(r.get("16.0.0.2")).toEqual({ final: false });
    expect(svc.stats().dropped).toBe(1);
  });

  it("forgets the failed-send count of IPs dropped from the full queue during an outage", async () => {
    // Prepare: every send times out, no backoff, a small queue
    const source = new TestSource();
    source.throws = new ProviderError("timeout", "headers timeout");
    const { svc } = build({
      source,
      queueMax: 10,
      batchSize: 10,
      deadlineMs: 5,
      lingerMs: 0,
      limiter: new RateLimiter({ requestsPerWindow: 1e9, windowS: 60, backoffBaseMs: 0, backoffMaxMs: 0 }),
    });
    // Act: far more distinct IPs than the queue holds
    for (let r = 0; r < 40; r++) await svc.lookup(Array.from({ length: 10 }, (_, i) => `9.0.${r}.${i}`));
    // Assess: only IPs still queued or in flight keep a count
    const attempts = (svc as unknown as { pump: { attempts: Map<string, number> } }).pump.attempts;
    const { queueDepth, inFlight, dropped } = svc.stats();
    expect(dropped).toBeGreaterThan(100);
    expect(attempts.size).toBeLessThanOrEqual(queueDepth + inFlight);
  });

  it("close() is idempotent, drains in-flight requests and releases waiters", async () => {
    // Prepare
    const source = new TestSource();
    source.delayMs = 100;
    const { svc, cache } = build({ source });
    const waiting = svc.lookup(["17.0.0.1"], { wait: true });
    await new Promise((r) => setTimeout(r, 30));
    // Act
    await Promise.all([svc.close(), svc.close()]);
    const r = await waiting;
    // Assess: the in-flight answer was not thrown away.
    expect(r.get("17.0.0.1")?.final).toBe(true);
    expect((await cache.get(["17.0.0.1"])).size).toBe(1);
    expect(svc.stats().queueDepth).toBe(0);
  });
});
