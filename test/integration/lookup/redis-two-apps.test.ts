/**
 * Issue 19: two real dnsgeo apps (createApp, separate data dirs and SQLite
 * files) sharing one real redis-server. What the first looked up from the
 * (fake) ip-api is a Redis hit for the second: ip-api is asked zero times
 * more. Then Redis is stopped mid-run: every record still comes back, each
 * batch within the lookup deadline, none lost.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../../src/app.js";
import { loadConfig } from "../../../src/config.js";
import { createMetrics, type Metrics } from "../../../src/observability/metrics.js";
import { startFakeIpApi, type FakeIpApi } from "../../helpers/fake-ipapi.js";
import { NO_REDIS_REASON, findRedisServer, startRedisServer, type RedisServer } from "../../helpers/redis-server.js";
import { ipv4s } from "../../unit/lookup/contract.js";

const bin = findRedisServer();
const DEADLINE_MS = loadConfig().lookup.deadline_ms;
/** Decoding, enriching and encoding a batch of 50 small records on top of the lookup deadline, on a busy 2-core machine. */
const MARGIN_MS = 150;

type Obj = Record<string, any>;

function records(ips: readonly string[], perRecord = 2): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < ips.length; i += perRecord) {
    const answers = ips.slice(i, i + perRecord).map((ip) => ({ Rdata: ip, Type: "A", Class: "IN" }));
    lines.push(JSON.stringify({ version: "1.100000", query_timestamp: "2024-05-14T09:13:00Z", query_name: `r${i}.example.`, query_type: "A", rcode: "NOERROR", answers, srcaddr: "10.0.0.5" }));
  }
  return Buffer.from(lines.join("\n") + "\n");
}

function parse(body: Buffer): Obj[] {
  return body.toString("utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Obj);
}

async function redisHits(metrics: Metrics): Promise<number> {
  const m = await metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get();
  return m?.values.find((v) => v.labels.tier === "redis" && v.labels.outcome === "hit")?.value ?? 0;
}

describe.skipIf(!bin)(`two dnsgeo apps sharing one redis-server${bin ? "" : ` (skipped: ${NO_REDIS_REASON})`}`, () => {
  let redis: RedisServer;
  let fake: FakeIpApi;
  const dirs: string[] = [];
  const apps: App[] = [];
  beforeAll(async () => {
    redis = await startRedisServer(bin as string);
    // A budget large enough that no batch waits on ip-api's rate limit: what is timed is Redis going away.
    fake = await startFakeIpApi({ batchPerWindow: 1000 });
  });
  afterAll(async () => {
    for (const a of apps) await a.close();
    await fake.close();
    await redis.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function app(extraEnv: Record<string, string> = {}): Promise<{ app: App; metrics: Metrics }> {
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-redis-app-"));
    dirs.push(dir);
    const metrics = createMetrics();
    const config = loadConfig({
      env: { DNSGEO_DATA_DIR: dir, DNSGEO_IPAPI_URL: fake.url, DNSGEO_CACHE_REDIS_URL: redis.url, DNSGEO_IPAPI_REQUESTS_PER_WINDOW: "1000", ...extraEnv },
    });
    const a = await createApp(config, { metrics });
    apps.push(a);
    return { app: a, metrics };
  }

  it("the second asks ip-api zero times for what the first looked up; Redis stopped mid-run loses no record", async () => {
    // Prepare: the first app looks 300 IPs up from ip-api (waiting for it) and closes (write-behind flushed).
    const ips = ipv4s(300, 3);
    const first = await app();
    const a = parse((await first.app.enricher.enrichBody(records(ips), { contentType: "application/x-ndjson" }, { wait: true })).body);
    await first.app.close();
    const askedByFirst = fake.counts.ips;
    // Act: the second app, its own empty SQLite file, the same Redis.
    const second = await app();
    const b = parse((await second.app.enricher.enrichBody(records(ips), { contentType: "application/x-ndjson" }, { wait: true })).body);
    // Assess
    expect(askedByFirst).toBe(ips.length);
    expect(fake.counts.ips).toBe(askedByFirst);
    expect(await redisHits(second.metrics)).toBe(ips.length);
    expect(b).toHaveLength(ips.length / 2);
    for (const [i, r] of b.entries()) {
      expect(r.dnsgeo.status, r.query_name).toBe("enriched");
      expect(r.dnsgeo.answers.map((x: Obj) => x.source)).toEqual(["ip-api", "ip-api"]);
      expect(r.dnsgeo.answers).toEqual(a[i]?.dnsgeo.answers);
    }

    // Act: new IPs in batches of 50 records without waiting; Redis stops after the fifth batch.
    const fresh = ipv4s(2000, 9);
    let sent = 0;
    let got = 0;
    let slowest = 0;
    const unenrichedAfterStop: string[] = [];
    for (let batch = 0; batch < 20; batch++) {
      if (batch === 5) await redis.stop();
      const chunk = fresh.slice(batch * 100, batch * 100 + 100);
      const started = performance.now();
      const out = parse((await second.app.enricher.enrichBody(records(chunk), { contentType: "application/x-ndjson" })).body);
      slowest = Math.max(slowest, performance.now() - started);
      sent += chunk.length / 2;
      got += out.length;
      for (const r of out) {
        expect(r.dnsgeo, r.query_name).toBeDefined();
        if (batch >= 5 && r.dnsgeo.status !== "enriched") unenrichedAfterStop.push(String(r.dnsgeo.status));
      }
    }
    // Assess: every record back, each batch within the deadline.
    expect(got).toBe(sent);
    expect(slowest).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    // Offline data answers what ip-api has not yet: records are partial, never dropped.
    for (const s of unenrichedAfterStop) expect(["partial", "pending"]).toContain(s);
    const errors = (await second.metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get())?.values.filter(
      (v) => v.labels.tier === "redis" && (v.labels.outcome === "error" || v.labels.outcome === "timeout"),
    );
    expect((errors ?? []).reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(15);
    await redis.start();
  }, 60_000);

  it("cache.redis.fleet_budget: two apps behind one NAT send at most requests_per_window batches together", async () => {
    // Prepare: 2 batches of 10 IPs per 60 s window for the whole fleet; each app alone would send 2.
    const env = {
      DNSGEO_CACHE_REDIS_FLEET_BUDGET: "true",
      DNSGEO_CACHE_REDIS_KEY_PREFIX: "fleet:",
      DNSGEO_IPAPI_REQUESTS_PER_WINDOW: "2",
      DNSGEO_IPAPI_BATCH_SIZE: "10",
      DNSGEO_SHUTDOWN_TIMEOUT_MS: "200",
    };
    const x = await app(env);
    const y = await app(env);
    const before = fake.counts.batchRequests;
    const windowAtStart = Math.floor(Date.now() / 60_000);
    // Act: both ask for 100 new IPs each, not waiting; the background then drains what the budget allows.
    await Promise.all([
      x.app.enricher.enrichBody(records(ipv4s(100, 21)), { contentType: "application/x-ndjson" }),
      y.app.enricher.enrichBody(records(ipv4s(100, 22)), { contentType: "application/x-ndjson" }),
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    const sent = fake.counts.batchRequests - before;
    await Promise.all([x.app.close(), y.app.close()]);
    // Assess: the fleet's two, not four (windows are epoch-aligned minutes; one more window inside the run allows two more).
    expect(sent).toBeGreaterThanOrEqual(1);
    const windows = Math.floor(Date.now() / 60_000) - windowAtStart + 1;
    expect(sent).toBeLessThanOrEqual(2 * windows);
  }, 30_000);
});
