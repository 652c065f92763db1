/**
 * Properties of the whole pure pipeline (fast-check): it never throws, gives one
 * output per input record (envelopes: one per inner event), keeps every original
 * field, and never lets a special-purpose address reach a lookup.
 */
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { DecodeError } from "../../../src/codecs/decode-error.js";
import type { GeoService, IpResult } from "../../../src/lookup/lookup.js";

/** Records what it is asked; answers nothing (final), so formats see "not found". */
class RecordingGeo implements GeoService {
  readonly asked: string[] = [];
  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    for (const ip of ips) this.asked.push(ip);
    return new Map(ips.map((ip) => [ip, { final: true }]));
  }
  async close(): Promise<void> {}
}

function enricher(geo: GeoService = new RecordingGeo(), format: "ecs" | "quicksight" = "ecs"): Enricher {
  return new Enricher({ geo, config: loadConfig({ overrides: { output: { format } } }) });
}

/** Every leaf (path → value) of a JSON value; arrays are leaves as a whole. */
function leaves(v: unknown, path: string[] = [], out: Array<[string[], unknown]> = []): Array<[string[], unknown]> {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0) {
    for (const [k, x] of Object.entries(v)) leaves(x, [...path, k], out);
  } else out.push([path, v]);
  return out;
}

function at(v: unknown, path: string[]): unknown {
  let cur = v;
  for (const k of path) {
    if (cur === null || typeof cur !== "object" || !Object.prototype.hasOwnProperty.call(cur, k)) return Symbol.for("missing");
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

// Objects whose keys sometimes collide with what dnsgeo adds (dns, destination, dnsgeo).
const key = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("dns", "destination", "dnsgeo", "answers", "query_name", "resolved_ip", "geo", "ip", "__proto__"));
const recordArb = fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 8 });

describe("pipeline properties", () => {
  it("never throws on arbitrary bytes (identity encoding) and keeps every non-JSON line", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (bytes) => {
        const res = await enricher().enrichBody(bytes, { contentType: "application/x-ndjson", contentEncoding: "identity" });
        const raws = res.items.filter((i) => i.kind === "unparsed").map((i) => (i as { raw: string }).raw);
        expect(res.counts.unparsed).toBe(raws.length);
      }),
      { numRuns: 400 },
    );
  });

  it("only ever throws DecodeError on arbitrary bytes claimed to be compressed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.constantFrom("gzip", "deflate", "zstd", "snappy", "br"), async (bytes, enc) => {
        try {
          await enricher().enrichBody(bytes, { contentEncoding: enc });
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("gives exactly one output per NDJSON record and keeps every original field (ECS)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 20 }), async (records) => {
        const body = Buffer.from(records.map((r) => JSON.stringify(r)).join("\n") + "\n");
        const parsedBack = records.map((r) => JSON.parse(JSON.stringify(r)) as unknown);
        const res = await enricher().enrichBody(body, { contentType: "application/x-ndjson" });
        expect(res.items.length).toBe(records.length);
        res.items.forEach((item, i) => {
          expect(["json", "jsontext"]).toContain(item.kind);
          const out = item.kind === "jsontext" ? (JSON.parse(item.parts.join("")) as unknown) : (item as { value: unknown }).value;
          const original = parsedBack[i] as Record<string, unknown> | null;
          // A record's own `dnsgeo` is kept under `dnsgeo_original` (unless it has one already).
          const ownDnsgeo = original !== null && typeof original === "object" && !Array.isArray(original) && original.dnsgeo !== undefined;
          const keepsOriginal = ownDnsgeo && original.dnsgeo_original === undefined;
          for (const [path, v] of leaves(parsedBack[i])) {
            if (path.length === 0) continue;
            if (ownDnsgeo && path[0] === "dnsgeo" && !keepsOriginal) continue;
            const got = at(out, ownDnsgeo && path[0] === "dnsgeo" ? ["dnsgeo_original", ...path.slice(1)] : path);
            // An empty object may gain keys (dnsgeo adds, never changes); every other leaf is kept as is.
            if (v !== null && typeof v === "object" && !Array.isArray(v)) expect(got, `field ${path.join(".")}`).toBeTypeOf("object");
            else expect(got, `field ${path.join(".")}`).toEqual(v);
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  it("gives exactly one QuickSight row per record without explode", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 10 }), async (records) => {
        const body = Buffer.from(JSON.stringify(records));
        const res = await enricher(new RecordingGeo(), "quicksight").enrichBody(body, { contentType: "application/json" });
        expect(res.items.length).toBe(records.length);
        for (const item of res.items) {
          const row = (item as { value: Record<string, unknown> }).value;
          for (const v of Object.values(row)) expect(v === null || typeof v !== "object").toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("expands a CloudWatch envelope (plain and base64+gzip) into one output per log event", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { maxLength: 12 }), fc.boolean(), async (events, packed) => {
        const envelope = {
          messageType: "DATA_MESSAGE",
          owner: "123456789012",
          logGroup: "/aws/route53resolver/queries",
          logStream: "vpc-0a1b2c3d",
          subscriptionFilters: ["dnsgeo"],
          policyLevel: "ACCOUNT_LEVEL_POLICY",
          logEvents: events.map((e, i) => ({ id: String(i), timestamp: 1_790_000_000_000 + i, message: JSON.stringify(e) })),
        };
        const body = packed
          ? Buffer.from(JSON.stringify(gzipSync(Buffer.from(JSON.stringify(envelope))).toString("base64")) + "\n")
          : Buffer.from(JSON.stringify(envelope) + "\n");
        const res = await enricher().enrichBody(body, { contentType: "application/x-ndjson" });
        expect(res.items.length).toBe(events.length);
      }),
      { numRuns: 150 },
    );
  });
});

// ---- special-purpose addresses never reach a lookup -------------------------

/** IANA IPv4/IPv6 special-purpose registries, written out here independently of src/. */
const SPECIAL = [
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
  "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
  "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
  "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
  "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
].map((c) => ipaddr.parseCIDR(c));

/** True when `ip` (canonical text) may be sent to a provider by the registries above. */
function oracleLookupable(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return false;
  let addr = ipaddr.parse(ip);
  if (addr.kind() === "ipv6") {
    const v6 = addr as ipaddr.IPv6;
    // NAT64 well-known prefix: only its embedded IPv4 may be looked up, never the v6 form.
    if (v6.match(ipaddr.parseCIDR("64:ff9b::/96"))) return false;
    if (!v6.match(ipaddr.parseCIDR("2000::/3"))) return false;
  }
  for (const [net, bits] of SPECIAL) {
    if (net.kind() === addr.kind() && (addr as ipaddr.IPv4).match(net, bits)) return false;
  }
  // Canonical text only: what was asked must be the address's own canonical form.
  if (addr.kind() === "ipv4") return ip === addr.toString() && ipaddr.IPv4.isValidFourPartDecimal(ip);
  return ip === (addr as ipaddr.IPv6).toRFC5952String();
}

const octet = fc.integer({ min: 0, max: 255 });
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const inSpecialV4 = fc.oneof(
  fc.tuple(octet, octet, octet).map(([a, b, c]) => `10.${a}.${b}.${c}`),
  fc.tuple(octet, octet).map(([a, b]) => `192.168.${a}.${b}`),
  fc.tuple(fc.integer({ min: 16, max: 31 }), octet, octet).map(([a, b, c]) => `172.${a}.${b}.${c}`),
  fc.tuple(fc.integer({ min: 64, max: 127 }), octet, octet).map(([a, b, c]) => `100.${a}.${b}.${c}`),
  fc.tuple(octet, octet, octet).map(([a, b, c]) => `127.${a}.${b}.${c}`),
  fc.tuple(octet, octet).map(([a, b]) => `169.254.${a}.${b}`),
  fc.constantFrom("192.0.2.", "198.51.100.", "203.0.113.", "192.88.99.", "192.0.0.").chain((p) => octet.map((x) => p + x)),
  fc.tuple(fc.integer({ min: 18, max: 19 }), octet, octet).map(([a, b, c]) => `198.${a}.${b}.${c}`),
  fc.tuple(fc.integer({ min: 224, max: 255 }), octet, octet, octet).map((o) => o.join(".")),
  fc.tuple(octet, octet, octet).map(([a, b, c]) => `0.${a}.${b}.${c}`),
);
const hex = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
const v6 = fc.array(hex, { minLength: 8, maxLength: 8 }).map((h) => h.join(":"));
const inSpecialV6 = fc.oneof(
  fc.constantFrom("::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456:789a::1", "ff02::1", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "2002:c000:0204::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "100::1", "64:ff9b:1::a00:1", "3fff::1", "5f00::1"),
  inSpecialV4.map((a) => `::ffff:${a}`),
  inSpecialV4.map((a) => `64:ff9b::${a}`),
  fc.tuple(hex, hex).map(([a, b]) => `fe80::${a}:${b}`),
  fc.tuple(hex, hex).map(([a, b]) => `fd00::${a}:${b}`),
);
const oddForms = fc.constantFrom("127.1", "0x7f.0.0.1", "0x7f.1", "010.0.0.1", "1.2.3.04", "08.8.8.8", "8.8.8.8.", " 8.8.8.8", "8.8.8", "2130706433", "0177.0.0.1", "::ffff:127.0.0.1", "[::1]", "8.8.8.8/32", "1.1.1.1:53");
const anyAnswer = fc.oneof(v4, v6, inSpecialV4, inSpecialV6, oddForms, fc.string({ maxLength: 12 }), fc.domain());

describe("special-purpose addresses", () => {
  it("never reach a lookup, whatever the record kind and textual form", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(anyAnswer, { maxLength: 6 }), { minLength: 1, maxLength: 8 }), async (answerSets) => {
        const geo = new RecordingGeo();
        const lines: string[] = [];
        answerSets.forEach((answers, i) => {
          switch (i % 5) {
            case 0:
              lines.push(JSON.stringify({ version: "1.100000", query_name: "x.example.", query_type: "A", answers: answers.map((a) => ({ Rdata: a, Type: a.includes(":") ? "AAAA" : "A", Class: "IN" })) }));
              break;
            case 1:
              lines.push(JSON.stringify({ "@timestamp": "2026-11-27T10:00:00Z", dns: { question: { name: "x.example" }, answers: answers.map((a) => ({ data: a, type: "A" })), resolved_ip: answers } }));
              break;
            case 2:
              lines.push(JSON.stringify({ ts: 1.79e9, uid: "C1", "id.orig_h": "10.0.0.2", query: "x.example", answers }));
              break;
            case 3:
              lines.push(JSON.stringify({ EventID: 22, QueryName: "x.example", QueryResults: answers.map((a) => (a.includes(".") || a.includes(":") ? a : `type:  5 ${a}`)).join(";") + ";" }));
              break;
            default:
              lines.push(JSON.stringify({ version: "1.100000", query_name: "x.example.", firewall_rule_action: "ALERT", answers: answers.map((a) => ({ Rdata: a, Type: "A", Class: "IN" })) }));
          }
        });
        await enricher(geo).enrichBody(Buffer.from(lines.join("\n") + "\n"), { contentType: "application/x-ndjson" });
        for (const ip of geo.asked) expect(oracleLookupable(ip), `${ip} reached the lookup`).toBe(true);
      }),
      { numRuns: 1500 },
    );
  });

  it("public addresses in answers do reach the lookup, in canonical form", async () => {
    const geo = new RecordingGeo();
    const rec = { version: "1.100000", query_name: "x.example.", answers: [{ Rdata: "8.8.8.8", Type: "A" }, { Rdata: "::ffff:1.1.1.1", Type: "AAAA" }, { Rdata: "2606:4700:4700:0:0:0:0:1111", Type: "AAAA" }, { Rdata: "10.1.2.3", Type: "A" }] };
    await enricher(geo).enrichBody(Buffer.from(JSON.stringify(rec) + "\n"), { contentType: "application/x-ndjson" });
    expect(geo.asked.sort()).toEqual(["1.1.1.1", "2606:4700:4700::1111", "8.8.8.8"]);
  });
});
