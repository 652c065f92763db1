/**
 * The provider refusing connections, answering 500, answering garbage or never
 * answering: every lookup still comes back within the deadline (+ 50 ms), with
 * MMDB data where MMDB has it, and the limiter never counts a failed send as a
 * success.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { BackfillQueue } from "../../../src/lookup/backfill-queue.js";
import { DefaultGeoService } from "../../../src/lookup/geo-service.js";
import { IpApiProvider, ipApiOptionsFromConfig } from "../../../src/lookup/ipapi-provider.js";
import { LookupChain } from "../../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { MmdbProvider } from "../../../src/lookup/mmdb-provider.js";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { startFakeIpApi, type FakeIpApi, type FakeMode } from "../../helpers/fake-ipapi.js";

const DEADLINE_MS = 100;
const MARGIN_MS = 50;
/** Public IPs the bundled MMDB data knows (well-known resolvers). */
const KNOWN = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "2001:4860:4860::8888"];

let mmdb: MmdbProvider;
let fake: FakeIpApi | undefined;
const closers: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  mmdb = await MmdbProvider.open({ ttlS: 86400 });
  // Warm the reader the way a server's first requests would, so cold-start work is not measured.
  mmdb.get(Array.from({ length: 200 }, (_, i) => `${1 + (i % 220)}.${i}.1.1`));
});
afterAll(async () => {
  mmdb?.close();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await fake?.close();
  fake = undefined;
});

async function setup(mode: FakeMode) {
  fake = await startFakeIpApi({ windowMs: 1000 });
  const cfg = loadConfig({ overrides: { ipapi: { url: fake.url, timeout_ms: 300, window_s: 1 }, lookup: { deadline_ms: DEADLINE_MS } } });
  const logger = silentLogger();
  const metrics = createMetrics();
  const chain = new LookupChain([new MemoryTier({ maxEntries: 1000 })], { logger, metrics });
  const provider = new IpApiProvider(Object.assign(ipApiOptionsFromConfig(cfg), { metrics, logger }));
  const limiter = new RateLimiter({ requestsPerWindow: 15, windowS: 1, logger, metrics, backoffBaseMs: 100, backoffMaxMs: 200 });
  let svc: DefaultGeoService | undefined;
  const queue = new BackfillQueue({ max: 1000, metrics, onDrop: (ip) => svc?.dropped(ip) });
  svc = new DefaultGeoService({
    cache: chain, provider, fallback: mmdb, limiter, queue, logger, metrics,
    deadlineMs: DEADLINE_MS, lingerMs: 5, batchSize: 100, staleMaxS: 86400, shutdownTimeoutMs: 200,
  });
  closers.push(() => provider.close(), () => chain.close(), () => (svc).close());
  await fake.setMode(mode);
  return { svc, limiter, fake, metrics };
}

/**
 * Whole-process stalls (a loaded machine not scheduling us, GC): gaps in a
 * 5 ms interval. While the process is idle and waiting the interval keeps
 * ticking, so a service that waits past its deadline shows no gap.
 */
function stallProbe() {
  const gaps: Array<[number, number]> = [];
  let last = performance.now();
  const t = setInterval(() => {
    const now = performance.now();
    if (now - last > 10) gaps.push([last, now]);
    last = now;
  }, 5);
  return {
    during(a: number, b: number): number {
      let stall = 0;
      for (const [s, e] of gaps) if (e > a && s < b) stall += Math.max(0, Math.min(b, e) - Math.max(a, s) - 5);
      return stall;
    },
    stop: () => clearInterval(t),
  };
}

/**
 * Several rounds of concurrent lookups. Each is compared with a reference
 * timer armed at the same moment for the deadline: `late` is how long the
 * lookup took past that timer, minus the time the process was stalled after
 * it fired, i.e. only the waiting the service itself did past its deadline.
 */
async function rounds(svc: DefaultGeoService, n: number) {
  const out: Array<{ ms: number; late: number; got: Awaited<ReturnType<DefaultGeoService["lookup"]>> }> = [];
  const probe = stallProbe();
  for (let r = 0; r < n; r++) {
    const batch = await Promise.all(
      [0, 1, 2].map(async (k) => {
        const ips = [...KNOWN, `20.${r}.${k}.1`, `45.${r}.${k}.9`];
        const t0 = performance.now();
        const ref = new Promise<number>((res) => setTimeout(() => res(performance.now()), DEADLINE_MS));
        const got = await svc.lookup(ips);
        const t1 = performance.now();
        const fired = await ref;
        return { ms: t1 - t0, late: t1 - fired - probe.during(fired, t1), got };
      }),
    );
    out.push(...batch);
  }
  probe.stop();
  return out;
}

describe.each<FakeMode>(["refuse", "500", "garbage", "hang"])("provider in %s mode", (mode) => {
  it("answers every lookup within the deadline with MMDB data, and counts no failed send as a success", async () => {
    // Prepare
    const { svc, limiter } = await setup(mode);
    // Act
    const results = await rounds(svc, 6);
    // Assess
    for (const r of results) {
      expect(r.late).toBeLessThan(MARGIN_MS);
      for (const ip of KNOWN) expect(r.got.get(ip)).toMatchObject({ final: false, entry: { src: "mmdb" } });
      for (const x of r.got.values()) expect(x.final).toBe(false);
    }
    const s = limiter.stats();
    expect(s.successes).toBe(0);
    expect(s.failures + svc.stats().inFlight).toBeGreaterThanOrEqual(1);
    if (mode === "refuse") expect(s.refunds).toBe(s.failures);
    else expect(s.refunds).toBe(0);
  });
});

describe("recovery", () => {
  it("backfills the queue once the provider is back, after which lookups are final cache hits", async () => {
    // Prepare
    const { svc, limiter, fake: f } = await setup("refuse");
    await svc.lookup(KNOWN);
    // Act
    await f.setMode("normal");
    const drained = await svc.drain(5000);
    const r = await svc.lookup(KNOWN);
    // Assess
    expect(drained).toBe(true);
    for (const ip of KNOWN) expect(r.get(ip)).toMatchObject({ final: true, entry: { src: "ip-api" } });
    expect(limiter.stats().successes).toBeGreaterThanOrEqual(1);
    expect(f.counts.duplicateIps).toBe(0);
  });
});
