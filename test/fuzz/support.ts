/**
 * Shared pieces of the fuzz targets: run counts, a GeoService that records what it
 * is asked, an oracle for "may be sent to a provider" written independently of
 * src/ (IANA special-purpose registries), and generators for hostile inputs.
 */
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import type { GeoService, IpResult } from "../../src/lookup/lookup.js";

/** Cases per in-process target: DNSGEO_FUZZ_RUNS (npm run fuzz: 100 000), a few thousand in npm test. */
export const RUNS = Number(process.env.DNSGEO_FUZZ_RUNS ?? 2000);
/** Cases per target over real HTTP/gRPC (a tenth, at least 200). */
export const WIRE_RUNS = Math.max(200, Math.floor(RUNS / 10));

/** Records every IP it is asked; answers "final, nothing known". */
export class RecordingGeo implements GeoService {
  readonly asked: string[] = [];
  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const out = new Map<string, IpResult>();
    for (const ip of ips) {
      this.asked.push(ip);
      out.set(ip, { final: true });
    }
    return out;
  }
  async close(): Promise<void> {}
}

const SPECIAL = [
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
  "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
  "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
  "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
  "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
].map((c) => ipaddr.parseCIDR(c));

/** True when `ip` is canonical text of an address outside every special-purpose range. */
export function lookupable(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return false;
  const addr = ipaddr.parse(ip);
  if (addr.kind() === "ipv6" && !(addr as ipaddr.IPv6).match(ipaddr.parseCIDR("2000::/3"))) return false;
  for (const [net, bits] of SPECIAL) if (net.kind() === addr.kind() && (addr as ipaddr.IPv4).match(net, bits)) return false;
  if (addr.kind() === "ipv4") return ipaddr.IPv4.isValidFourPartDecimal(ip) && ip === addr.toString();
  return ip === (addr as ipaddr.IPv6).toRFC5952String();
}

const octet = fc.integer({ min: 0, max: 255 });
const hex = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const v6 = fc.array(hex, { minLength: 8, maxLength: 8 }).map((h) => h.join(":"));

/** Strings that look like IPs, in every odd textual form a resolver or a log might write. */
export const ipLike: fc.Arbitrary<string> = fc.oneof(
  v4,
  v6,
  fc.constantFrom(
    "127.1", "0x7f.1", "0x7f.0.0.1", "010.0.0.1", "0177.0.0.1", "2130706433", "1.2.3.04", "8.8.8.8.", " 8.8.8.8", "8.8.8.8\n", "8.8.8",
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:10.0.0.1", "::ffff:8.8.8.8", "0:0:0:0:0:ffff:c0a8:1", "::127.0.0.1", "fe80::1%eth0", "fe80::1%25eth0",
    "64:ff9b::8.8.8.8", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2001:db8::1", "2002:c000:204::1", "[::1]", "::", "::1",
    "8.8.8.8/32", "1.1.1.1:53", "2001:4860:4860::8888", "2001:4860:4860:0:0:0:0:8888", "2001:4860:4860::8888%1", "ff02::1", "fd00::1", "100.64.1.1",
  ),
  v4.map((a) => `::ffff:${a}`),
  v4.map((a) => `64:ff9b::${a}`),
  fc.tuple(v6, fc.string({ maxLength: 5 })).map(([a, z]) => `${a}%${z}`),
  fc.string({ maxLength: 16 }),
);

/** Strings with lone surrogates, controls and non-BMP characters. */
export const oddUnicode: fc.Arbitrary<string> = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.constantFrom(0, 0x0a, 0x0d, 0x22, 0x5c, 0xfeff, 0x2028)), { maxLength: 40 })
  .map((cs) => String.fromCharCode(...cs));

/** Any JSON-ish value where a string belongs: numbers, booleans, null, arrays, objects. */
export const wrongType: fc.Arbitrary<unknown> = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }), oddUnicode, ipLike);

/** A record of one of the known kinds carrying `answers`, with `rid` for counting. */
export function recordOf(kind: number, rid: number, answers: readonly unknown[]): Record<string, unknown> {
  switch (kind % 5) {
    case 0:
      return { version: "1.100000", query_name: "a.example.", query_type: "A", answers: answers.map((a) => ({ Rdata: a, Type: "A", Class: "IN" })), rid };
    case 1:
      return { "@timestamp": "2024-01-01T00:00:00Z", dns: { question: { name: "a.example" }, answers: answers.map((a) => ({ data: a, type: "A" })), resolved_ip: answers }, rid };
    case 2:
      return { ts: 1, uid: "C1", "id.orig_h": "10.0.0.1", query: "a.example", answers, rid };
    case 3:
      return { EventID: 22, QueryName: "a.example", QueryResults: answers.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(";"), rid };
    default:
      return { query_name: answers[0] ?? "x", answers: answers[1] ?? answers, rid };
  }
}

let sinceYield = 0;
/**
 * Lets the event loop turn every few hundred cases: an async property whose
 * body only awaits microtasks never does, and vitest's worker then misses its
 * own RPC deadline on a run of 100 000 cases.
 */
export async function breathe(): Promise<void> {
  if (++sinceYield < 500) return;
  sinceYield = 0;
  await new Promise<void>((r) => setImmediate(r));
}
