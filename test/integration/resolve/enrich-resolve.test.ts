/**
 * The resolve step through the Enricher (and once through the app wired from
 * config), against the fake UDP DNS server: `off` asks nothing, `missing` asks
 * only for records without IP answers, `always` adds to the answers; resolved
 * answers are marked `via: "resolve"`, special-purpose ones never reach a
 * provider, one query per distinct name per batch, and a dead resolver costs at
 * most its timeout while every record still comes back.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../../src/app.js";
import { loadConfig, type Config, type ConfigInput } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { NameResolver } from "../../../src/resolve/resolver.js";
import { startFakeDns, type FakeDns } from "../../helpers/fake-dns.js";
import { startFakeIpApi } from "../../helpers/fake-ipapi.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";

type Obj = Record<string, any>;

function route53(name: string, answers: string[], action?: "BLOCK" | "ALERT"): Obj {
  const rec: Obj = {
    version: "1.100000",
    query_timestamp: "2024-05-14T09:13:00Z",
    query_name: name,
    query_type: "A",
    rcode: "NOERROR",
    answers: answers.map((ip) => ({ Rdata: ip, Type: ip.includes(":") ? "AAAA" : "A", Class: "IN" })),
    srcaddr: "10.0.0.5",
  };
  if (action) {
    rec.firewall_rule_action = action;
    rec.firewall_rule_group_id = "rslvr-frg-0a1b2c3d4e5f6071";
  }
  return rec;
}

function ndjson(recs: Obj[]): Buffer {
  return Buffer.from(recs.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

function parseOut(body: Buffer): Obj[] {
  return body
    .toString("utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Obj);
}

let fake: FakeDns;
const closers: Array<() => unknown> = [];

function setup(resolve: Partial<Config["resolve"]>, extra: ConfigInput = {}): { enricher: Enricher; geo: FixtureGeoService; resolver: NameResolver } {
  const config = loadConfig({ overrides: Object.assign({ lookup: { deadline_ms: 2000 }, resolve: Object.assign({ servers: [fake.server], timeout_ms: 2000 }, resolve) }, extra) });
  const geo = new FixtureGeoService();
  const resolver = new NameResolver({ servers: config.resolve.servers, timeoutMs: config.resolve.timeout_ms, concurrency: config.resolve.concurrency, cacheMax: config.resolve.cache_max });
  closers.push(() => resolver.close());
  return { enricher: new Enricher({ geo, config, resolver }), geo, resolver };
}

beforeEach(async () => {
  fake = await startFakeDns({
    records: {
      "malware-c2.example": { a: ["8.8.8.8"], ttl: 60 },
      "www.example.com": { a: ["1.1.1.1", "8.8.8.8"], aaaa: ["2606:4700:4700::1111"], ttl: 60 },
      "intranet.example": { a: ["10.0.0.1"], ttl: 60 },
    },
  });
});

afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await fake.close();
});

describe("resolve through the Enricher", () => {
  it("mode off: the DNS server gets no query at all", async () => {
    // Prepare
    const { enricher } = setup({ mode: "off" });
    const body = ndjson([route53("malware-c2.example.", [], "BLOCK"), route53("www.example.com.", ["1.1.1.1"])]);
    // Act
    const res = await enricher.enrichBody(body, { contentType: "application/x-ndjson" });
    const out = parseOut(res.body);
    // Assess
    expect(fake.counts.queries).toBe(0);
    expect(out[0]?.dnsgeo).toEqual({ status: "skipped", reason: "no_answers" });
  });

  it("mode missing: a BLOCK record without answers gets the resolved IP, marked via resolve; a record with answers asks nothing", async () => {
    // Prepare
    const { enricher, geo } = setup({ mode: "missing" });
    const body = ndjson([route53("malware-c2.example.", [], "BLOCK"), route53("www.example.com.", ["1.1.1.1"])]);
    // Act
    const res = await enricher.enrichBody(body, { contentType: "application/x-ndjson" });
    const out = parseOut(res.body);
    // Assess
    expect(fake.queriesFor("malware-c2.example")).toBe(2);
    expect(fake.queriesFor("www.example.com")).toBe(0);
    const blocked = out[0] as Obj;
    expect(blocked.dnsgeo.status).toBe("enriched");
    expect(blocked.dnsgeo.answers).toHaveLength(1);
    expect(blocked.dnsgeo.answers[0]).toMatchObject({ ip: "8.8.8.8", via: "resolve", source: "ip-api", as: { number: 15169 } });
    // Not in the DNS answer the log recorded: no resolved_ip, no destination.
    expect(blocked.dns).toBeUndefined();
    expect(blocked.destination).toBeUndefined();
    expect(blocked.answers).toEqual([]);
    const answered = out[1] as Obj;
    expect(answered.dnsgeo.answers.map((a: Obj) => [a.ip, a.via])).toEqual([["1.1.1.1", undefined]]);
    expect(new Set(geo.asked)).toEqual(new Set(["8.8.8.8", "1.1.1.1"]));
  });

  it("mode missing: a name resolving to a private address is skipped and never looked up", async () => {
    // Prepare
    const { enricher, geo } = setup({ mode: "missing" });
    const body = ndjson([route53("intranet.example.", [], "BLOCK")]);
    // Act
    const res = await enricher.enrichBody(body, { contentType: "application/x-ndjson" });
    const out = parseOut(res.body);
    // Assess
    expect(fake.queriesFor("intranet.example")).toBe(2);
    expect(out[0]?.dnsgeo).toEqual({ status: "skipped", reason: "no_public_answers", answers: [{ ip: "10.0.0.1", reason: "private", via: "resolve" }] });
    expect(geo.asked).toEqual([]);
  });

  it("mode always: resolved IPs are added after the recorded ones, without duplicates", async () => {
    // Prepare
    const { enricher } = setup({ mode: "always" });
    const body = ndjson([route53("www.example.com.", ["1.1.1.1"])]);
    // Act
    const res = await enricher.enrichBody(body, { contentType: "application/x-ndjson" });
    const out = parseOut(res.body);
    // Assess
    const rec = out[0] as Obj;
    expect(rec.dnsgeo.answers.map((a: Obj) => [a.ip, a.via])).toEqual([
      ["1.1.1.1", undefined],
      ["8.8.8.8", "resolve"],
      ["2606:4700:4700::1111", "resolve"],
    ]);
    expect(rec.dns.resolved_ip).toEqual(["1.1.1.1"]);
    expect(rec.destination.ip).toBe("1.1.1.1");
    expect(rec.dnsgeo.status).toBe("enriched");
  });

  it("the object path (JSON array) gives the same output as the NDJSON text path", async () => {
    // Prepare
    const { enricher } = setup({ mode: "always" });
    const recs = [route53("www.example.com.", ["8.8.8.8"]), route53("malware-c2.example.", ["1.1.1.1"]), route53("malware-c2.example.", [], "BLOCK")];
    // Act
    const text = parseOut((await enricher.enrichBody(ndjson(recs), { contentType: "application/x-ndjson" })).body);
    const obj = JSON.parse((await enricher.enrichBody(Buffer.from(JSON.stringify(recs)), { contentType: "application/json" })).body.toString("utf8")) as Obj[];
    // Assess
    expect(text).toEqual(obj);
    // 8.8.8.8 is a recorded answer of the first record and a resolved one of the others: each keeps its own marking.
    expect(text.map((r) => r.dnsgeo.answers.find((a: Obj) => a.ip === "8.8.8.8")?.via)).toEqual([undefined, "resolve", "resolve"]);
  });

  it("asks once per distinct name in a batch, and the cache answers the next batch", async () => {
    // Prepare
    const { enricher, resolver } = setup({ mode: "missing" });
    const recs = Array.from({ length: 50 }, (_, i) => route53(i % 2 === 0 ? "malware-c2.example." : "MALWARE-C2.example", [], "BLOCK"));
    // Act
    const first = await enricher.enrichBody(ndjson(recs), { contentType: "application/x-ndjson" });
    const second = await enricher.enrichBody(ndjson(recs), { contentType: "application/x-ndjson" });
    // Assess
    expect(fake.queriesFor("malware-c2.example")).toBe(2);
    expect(resolver.stats.cacheHits).toBe(2);
    for (const res of [first, second]) {
      expect(res.counts.enriched).toBe(50);
      for (const r of parseOut(res.body)) expect(r.dnsgeo.answers).toEqual([expect.objectContaining({ ip: "8.8.8.8", via: "resolve" })]);
    }
  });

  it("a resolver that never answers delays the batch by at most the resolve timeout, and every record comes back", async () => {
    // Prepare
    fake.setMode("hang");
    const { enricher } = setup({ mode: "missing", timeout_ms: 200 });
    const recs = [route53("malware-c2.example.", [], "BLOCK"), route53("www.example.com.", ["1.1.1.1"]), route53("other.example.", [], "BLOCK")];
    // Act
    const t0 = performance.now();
    const res = await enricher.enrichBody(ndjson(recs), { contentType: "application/x-ndjson" });
    const elapsed = performance.now() - t0;
    const out = parseOut(res.body);
    // Assess
    expect(elapsed).toBeLessThan(200 + 150);
    expect(out).toHaveLength(3);
    expect(out.map((r) => r.dnsgeo.status)).toEqual(["skipped", "enriched", "skipped"]);
    expect(fake.counts.queries).toBe(4);
  });

  it("the resolve phase also stays within a tighter request deadline", async () => {
    // Prepare
    fake.setMode("hang");
    const { enricher } = setup({ mode: "missing", timeout_ms: 5000 });
    // Act
    const t0 = performance.now();
    const res = await enricher.enrichBody(ndjson([route53("malware-c2.example.", [], "BLOCK")]), { contentType: "application/x-ndjson" }, { deadlineMs: 100 });
    const elapsed = performance.now() - t0;
    // Assess
    expect(elapsed).toBeLessThan(100 + 150);
    expect(res.counts.skipped).toBe(1);
  });
});

describe("resolve wired by the app from config", () => {
  it("mode missing: the app resolves with the configured servers, the provider gets the public IP and never the private one", async () => {
    // Prepare
    const ipapi = await startFakeIpApi();
    closers.push(() => ipapi.close());
    const config = loadConfig({
      overrides: {
        data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-resolve-")),
        cache: { sqlite: { enabled: false } },
        ipapi: { url: ipapi.url },
        mmdb: { enabled: false },
        resolve: { mode: "missing", servers: [fake.server] },
      },
    });
    const app = await createApp(config);
    closers.push(() => app.close());
    const body = ndjson([route53("malware-c2.example.", [], "BLOCK"), route53("intranet.example.", [], "BLOCK")]);
    // Act
    const res = await app.enricher.enrichBody(body, { contentType: "application/x-ndjson" }, { wait: true });
    const out = parseOut(res.body);
    await app.close();
    // Assess
    expect(fake.queriesFor("malware-c2.example")).toBe(2);
    expect(out[0]?.dnsgeo.status).toBe("enriched");
    expect(out[0]?.dnsgeo.answers[0]).toMatchObject({ ip: "8.8.8.8", via: "resolve", source: "ip-api" });
    expect(out[1]?.dnsgeo.answers).toEqual([{ ip: "10.0.0.1", reason: "private", via: "resolve" }]);
    expect([...ipapi.seen.keys()]).toEqual(["8.8.8.8"]);
    expect(ipapi.counts.specialIps).toBe(0);
  });
});
