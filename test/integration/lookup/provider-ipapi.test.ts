import { afterEach, describe, expect, it } from "vitest";
import { IpApiProvider, ProviderError } from "../../../src/lookup/ipapi-provider.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { startFakeIpApi, type FakeIpApi } from "../../helpers/fake-ipapi.js";

const FIELDS = "status,message,continentCode,country,countryCode,region,regionName,city,zip,lat,lon,timezone,isp,org,as,query";
const clock = { now: () => 1_700_000_000_000 };
let fake: FakeIpApi | undefined;
const providers: IpApiProvider[] = [];

function make(url: string, extra: { key?: string; timeoutMs?: number } = {}) {
  const metrics = createMetrics();
  const provider = new IpApiProvider(
    Object.assign({ url, fields: FIELDS, lang: "de", batchSize: 100, timeoutMs: 300, ttlS: 1000, negativeTtlS: 100, clock, metrics }, extra),
  );
  providers.push(provider);
  return { provider, metrics };
}

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
  await fake?.close();
  fake = undefined;
});

describe("IpApiProvider against the fake ip-api", () => {
  it("posts a batch with fields, lang and key, and parses success and fail answers in order", async () => {
    // Prepare
    fake = await startFakeIpApi({ failIps: ["203.0.113.9", "9.9.9.9"] });
    const { provider: p, metrics } = make(fake.url, { key: "k3y" });
    // Act
    const r = await p.fetchBatch(["8.8.8.8", "9.9.9.9", "2001:4860:4860::8888"]);
    // Assess
    expect(fake.lastQuery?.get("fields")).toBe(FIELDS);
    expect(fake.lastQuery?.get("lang")).toBe("de");
    expect(fake.lastQuery?.get("key")).toBe("k3y");
    expect(r.status).toBe(200);
    expect(r.rl).toBe(14);
    expect(r.ttl).toBeGreaterThan(0);
    expect(r.entries.map((e) => [e.ip, e.neg === true])).toEqual([["8.8.8.8", false], ["9.9.9.9", true], ["2001:4860:4860::8888", false]]);
    const want = fake.answerFor("8.8.8.8");
    const g = r.entries[0]?.geo;
    expect(g?.countryCode).toBe(want.countryCode);
    expect(g?.isp).toBe(want.isp);
    expect(g?.asn).toBe(Number(String(want.as).split(" ")[0]?.slice(2)));
    expect(r.entries[0]).toMatchObject({ src: "ip-api", fetchedAt: 1_700_000_000, expiresAt: 1_700_001_000 });
    expect(r.entries[1]).toMatchObject({ neg: true, expiresAt: 1_700_000_100 });
    expect((await metrics.providerRequests.get()).values).toEqual([expect.objectContaining({ value: 1, labels: { provider: "ipapi", code: "200" } })]);
    expect((await metrics.providerIps.get()).values[0]?.value).toBe(3);
  });

  it("returns non-200 answers with their X-Rl/X-Ttl and no entries", async () => {
    // Prepare
    fake = await startFakeIpApi({ batchPerWindow: 1 });
    const { provider: p } = make(fake.url);
    // Act
    const first = await p.fetchBatch(["8.8.8.8"]);
    const second = await p.fetchBatch(["8.8.4.4"]);
    const other = await startFakeIpApi();
    await other.setMode("500");
    const broken = await make(other.url).provider.fetchBatch(["1.1.1.1"]);
    await other.close();
    // Assess
    expect(first.rl).toBe(0);
    expect(second).toMatchObject({ status: 429, rl: 0, entries: [] });
    expect(second.ttl).toBeGreaterThan(0);
    expect(broken).toMatchObject({ status: 500, rl: 14, entries: [] });
  });

  it("rejects a garbage body as a `body` error, counted", async () => {
    // Prepare
    fake = await startFakeIpApi();
    await fake.setMode("garbage");
    const { provider: p, metrics } = make(fake.url);
    // Act
    const err = await p.fetchBatch(["8.8.8.8"]).catch((e: unknown) => e);
    // Assess
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).kind).toBe("body");
    expect((err as ProviderError).status).toBe(200);
    expect((await metrics.lookups.get()).values).toEqual([expect.objectContaining({ value: 1, labels: { tier: "ipapi", outcome: "error" } })]);
  });

  it("classifies a refused connection as `connect` (refundable) and a hung server as `timeout`", async () => {
    // Prepare
    fake = await startFakeIpApi();
    const { provider: p } = make(fake.url, { timeoutMs: 200 });
    // Act
    await fake.setMode("refuse");
    const refused = await p.fetchBatch(["8.8.8.8"]).catch((e: unknown) => e);
    await fake.setMode("hang");
    const started = Date.now();
    const hung = await p.fetchBatch(["8.8.8.8"]).catch((e: unknown) => e);
    const took = Date.now() - started;
    // Assess
    expect((refused as ProviderError).kind).toBe("connect");
    expect((hung as ProviderError).kind).toBe("timeout");
    expect(took).toBeLessThan(2000);
  });

  it("stops waiting when the caller's signal aborts", async () => {
    // Prepare
    fake = await startFakeIpApi();
    await fake.setMode("hang");
    const { provider: p } = make(fake.url, { timeoutMs: 10_000 });
    // Act
    const err = await p.fetchBatch(["8.8.8.8"], AbortSignal.timeout(50)).catch((e: unknown) => e);
    // Assess
    expect((err as ProviderError).kind).toBe("timeout");
  });

  it("answers 422 for more than 100 items, like the real service", async () => {
    // Prepare
    fake = await startFakeIpApi();
    const ips = Array.from({ length: 101 }, (_, i) => `8.8.${i >> 8}.${i & 255}`);
    // Act
    const res = await fetch(`${fake.url}/batch`, { method: "POST", body: JSON.stringify(ips) });
    await res.text();
    // Assess
    expect(res.status).toBe(422);
    expect(res.headers.get("x-rl")).not.toBeNull();
  });
});
