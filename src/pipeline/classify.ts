/**
 * Answer classification: is a raw answer string an IP, what is its canonical
 * text, and may it be looked up (`public`) or not (`skipped` + reason)?
 *
 * Decisions (see also the README, "Inputs"):
 * - Text that is not an IP at all (names such as `www.example.com.`, TXT text,
 *   version strings like `1.2.3.4.5`) gives `undefined` so callers drop it.
 * - IPv4 is accepted only as the four-part decimal dotted quad without leading
 *   zeros. Forms that `inet_aton` would take but that are ambiguous (`127.1`,
 *   `0x7f.0.0.1`, `010.0.0.1` — octal to some parsers, decimal to others —,
 *   `1.2.3.04`, a trailing dot, surrounding whitespace) are skipped with reason
 *   `not_canonical` and their raw text, because different consumers would read
 *   them as different addresses.
 * - IPv6 is accepted in any RFC 4291 text form (upper case, leading zeros,
 *   uncompressed, trailing dotted quad) and canonicalised to RFC 5952. Only a
 *   strict dotted quad is accepted as the embedded IPv4 part. A zone id
 *   (`fe80::1%eth0`) gives reason `zone_id` with the raw text.
 * - `::ffff:0:0/96` (IPv4-mapped) is unmapped and classified as IPv4.
 * - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) is mapped: the embedded
 *   IPv4 is what the client really talks to, so its canonical dotted quad is
 *   the answer and it is classified like any IPv4 (a DNS64-synthesised answer
 *   for a private IPv4 stays private). The local-use `64:ff9b:1::/48` is skipped.
 * - `2002::/16` (6to4) is skipped as `special_purpose`: the address names a
 *   tunnel endpoint, not a host a geo provider knows; the relay anycast
 *   `192.88.99.0/24` gives `6to4_relay`.
 * - `2001::/23` (IETF protocol assignments) is skipped: `2001::/32` as `teredo`,
 *   `2001:2::/48` as `benchmarking`, the rest as `special_purpose`.
 * - Any IPv6 outside global unicast `2000::/3` that no rule names is `reserved`.
 * - Every other IANA special-purpose entry is skipped as `special_purpose`, the
 *   globally reachable anycast ones too (AS112 `192.31.196.0/24`,
 *   `192.175.48.0/24`, `2620:4f:8000::/48`; AMT `192.52.193.0/24`, `2001:3::/32`):
 *   they name a service run from many places, so no provider's geo is right.
 *
 * ipaddr.js's `range()` lumps documentation, benchmarking and 6to4 relay into
 * "reserved" and accepts `::1.2.3.4` as IPv4-mapped, so ranges are checked
 * against tables built from the IANA registries instead, and parsing and
 * RFC 5952 text are done here (a property test checks the text against
 * ipaddr.js `toRFC5952String()`): this runs once per answer.
 */
import type { AnswerIp, SkipReason } from "./types.js";

const C_0 = 48;
const C_9 = 57;
const C_DOT = 46;
const C_COLON = 58;

/** Pre-shifted base (`base >>> shift`), shift (32 - prefix length), reason. */
type V4Rule = readonly [prefix: number, shift: number, reason: SkipReason];

function v4(cidr: string, reason: SkipReason): V4Rule {
  const [addr, bits] = cidr.split("/") as [string, string];
  const n = parseV4(addr);
  if (n < 0) throw new Error(`bad CIDR ${cidr}`);
  const shift = 32 - Number(bits);
  return [n >>> shift, shift, reason];
}

/** IANA IPv4 special-purpose registry; order matters (broadcast before 240/4). */
const V4_RULES: readonly V4Rule[] = [
  v4("0.0.0.0/8", "unspecified"),
  v4("10.0.0.0/8", "private"),
  v4("100.64.0.0/10", "cgnat"),
  v4("127.0.0.0/8", "loopback"),
  v4("169.254.0.0/16", "link_local"),
  v4("172.16.0.0/12", "private"),
  v4("192.0.0.0/24", "special_purpose"),
  v4("192.0.2.0/24", "documentation"),
  v4("192.31.196.0/24", "special_purpose"),
  v4("192.52.193.0/24", "special_purpose"),
  v4("192.88.99.0/24", "6to4_relay"),
  v4("192.168.0.0/16", "private"),
  v4("192.175.48.0/24", "special_purpose"),
  v4("198.18.0.0/15", "benchmarking"),
  v4("198.51.100.0/24", "documentation"),
  v4("203.0.113.0/24", "documentation"),
  v4("224.0.0.0/4", "multicast"),
  v4("255.255.255.255/32", "broadcast"),
  v4("240.0.0.0/4", "reserved"),
];

type V6Rule = readonly [parts: readonly number[], bits: number, reason: SkipReason];

function v6(cidr: string, reason: SkipReason): V6Rule {
  const [addr, bits] = cidr.split("/") as [string, string];
  const parts = parseV6Groups(addr);
  if (!parts) throw new Error(`bad CIDR ${cidr}`);
  return [parts, Number(bits), reason];
}

/**
 * IANA IPv6 special-purpose registry (mapped and NAT64 prefixes are handled
 * before these rules); first match wins.
 */
const V6_RULES: readonly V6Rule[] = [
  v6("::/128", "unspecified"),
  v6("::1/128", "loopback"),
  v6("64:ff9b:1::/48", "special_purpose"),
  v6("100::/64", "special_purpose"),
  v6("2001::/32", "teredo"),
  v6("2001:2::/48", "benchmarking"),
  v6("2001::/23", "special_purpose"),
  v6("2001:db8::/32", "documentation"),
  v6("2002::/16", "special_purpose"),
  v6("2620:4f:8000::/48", "special_purpose"),
  v6("3fff::/20", "documentation"),
  v6("5f00::/16", "special_purpose"),
  v6("fc00::/7", "unique_local"),
  v6("fe80::/10", "link_local"),
  v6("ff00::/8", "multicast"),
];

/**
 * Strict dotted quad → unsigned 32-bit number, or -1. No leading zeros, no
 * whitespace, exactly four parts.
 */
function parseV4(s: string): number {
  const len = s.length;
  if (len < 7 || len > 15) return -1;
  let out = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= len; i++) {
    const c = i < len ? s.charCodeAt(i) : C_DOT;
    if (c === C_DOT) {
      if (digits === 0 || part > 255) return -1;
      out = out * 256 + part;
      parts++;
      part = 0;
      digits = 0;
      continue;
    }
    if (c < C_0 || c > C_9) return -1;
    if (digits === 1 && part === 0) return -1; // leading zero
    part = part * 10 + (c - C_0);
    digits++;
    if (digits > 3) return -1;
  }
  return parts === 4 ? out : -1;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** RFC 4291 text (no zone id) → eight 16-bit groups, or undefined. */
function parseV6Groups(s: string): number[] | undefined {
  const len = s.length;
  if (len < 2 || len > 45) return undefined;
  const g: number[] = [];
  let dc = -1;
  let i = 0;
  if (s.charCodeAt(0) === C_COLON) {
    if (s.charCodeAt(1) !== C_COLON) return undefined;
    dc = 0;
    i = 2;
  }
  while (i < len) {
    const start = i;
    let v = 0;
    for (; i < len; i++) {
      const h = hexVal(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
    }
    if (i < len && s.charCodeAt(i) === C_DOT) {
      // Trailing dotted quad: only a strict one, and only as the last two groups.
      if (g.length > 6) return undefined;
      const n = parseV4(s.slice(start));
      if (n < 0) return undefined;
      g.push(n >>> 16, n & 0xffff);
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4 || g.length === 8) return undefined;
    g.push(v);
    if (i === len) break;
    if (s.charCodeAt(i) !== C_COLON) return undefined;
    i++;
    if (i < len && s.charCodeAt(i) === C_COLON) {
      if (dc >= 0) return undefined;
      dc = g.length;
      i++;
    } else if (i === len) return undefined;
  }
  if (dc < 0) return g.length === 8 ? g : undefined;
  if (g.length > 7) return undefined;
  const zeros = 8 - g.length;
  const out: number[] = new Array(8);
  for (let k = 0; k < dc; k++) out[k] = g[k] as number;
  for (let k = 0; k < zeros; k++) out[dc + k] = 0;
  for (let k = dc; k < g.length; k++) out[k + zeros] = g[k] as number;
  return out;
}

function v6Match(parts: readonly number[], rule: V6Rule): boolean {
  const base = rule[0];
  const bits = rule[1];
  let left = bits;
  for (let i = 0; i < 8 && left > 0; i++) {
    const take = left >= 16 ? 16 : left;
    const shift = 16 - take;
    if ((parts[i] as number) >>> shift !== (base[i] as number) >>> shift) return false;
    left -= take;
  }
  return true;
}

/**
 * RFC 5952 text of eight groups: lower-case hex without leading zeros, the
 * longest run (first on a tie) of two or more zero groups compressed to `::`.
 * Same output as ipaddr.js `toRFC5952String()` (a property test holds them
 * equal) without building an address object per answer.
 */
function rfc5952(parts: readonly number[]): string {
  let bestAt = -1;
  let bestLen = 1;
  let runAt = -1;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && parts[i] === 0) {
      if (runAt < 0) runAt = i;
      continue;
    }
    if (runAt >= 0) {
      if (i - runAt > bestLen) {
        bestAt = runAt;
        bestLen = i - runAt;
      }
      runAt = -1;
    }
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += i === 0 ? "::" : ":";
      i += bestLen - 1;
      continue;
    }
    out += (parts[i] as number).toString(16);
    if (i < 7) out += ":";
  }
  return out;
}

function classifyV4(n: number, text: string): AnswerIp {
  for (const [prefix, shift, reason] of V4_RULES) {
    if (n >>> shift === prefix) return { ip: text, class: "skipped", reason };
  }
  return { ip: text, class: "public" };
}

function v4Text(hi: number, lo: number): string {
  return `${hi >>> 8}.${hi & 255}.${lo >>> 8}.${lo & 255}`;
}

function classifyV6(parts: number[]): AnswerIp {
  const p0 = parts[0] as number;
  const p1 = parts[1] as number;
  const p6 = parts[6] as number;
  const p7 = parts[7] as number;
  // ::ffff:0:0/96 (IPv4-mapped) and 64:ff9b::/96 (NAT64 well-known): the IPv4 inside.
  if (parts[2] === 0 && parts[3] === 0 && parts[4] === 0) {
    if ((p0 === 0 && p1 === 0 && parts[5] === 0xffff) || (p0 === 0x64 && p1 === 0xff9b && parts[5] === 0)) {
      const text = v4Text(p6, p7);
      return classifyV4(p6 * 65536 + p7, text);
    }
  }
  const text = rfc5952(parts);
  for (const rule of V6_RULES) {
    if (v6Match(parts, rule)) return { ip: text, class: "skipped", reason: rule[2] };
  }
  if (p0 >>> 13 !== 1) return { ip: text, class: "skipped", reason: "reserved" };
  return { ip: text, class: "public" };
}

/** One inet_aton-style number part: decimal, octal or `0x` hex (case-insensitive). */
const ATON_PART = /^(?:0[xX][0-9a-fA-F]*|[0-9]+)$/;
/** IPv6-looking text (before any `%zone`). */
const V6ISH = /^[0-9a-fA-F:.]+$/;

/** True when text looks like an attempt at an IPv4 address (2–4 number parts, optional trailing dot). */
function looksV4(t: string): boolean {
  const fields = t.split(".");
  if (fields.length > 1 && fields[fields.length - 1] === "") fields.pop();
  if (fields.length < 2 || fields.length > 4) return false;
  for (const f of fields) if (!ATON_PART.test(f)) return false;
  return true;
}

/**
 * Classifies one raw answer string. Returns undefined when the text is not an
 * IP at all; otherwise the canonical IP with `public` (to be looked up) or
 * `skipped` and a reason. Never throws.
 */
export function classifyIp(text: string): AnswerIp | undefined {
  if (typeof text !== "string") return undefined;
  const n = parseV4(text);
  if (n >= 0) return classifyV4(n, text);
  if (text.indexOf(":") >= 0) {
    const pct = text.indexOf("%");
    const addr = pct >= 0 ? text.slice(0, pct) : text;
    const parts = parseV6Groups(addr);
    if (parts) {
      if (pct >= 0) return { ip: text, class: "skipped", reason: "zone_id" };
      return classifyV6(parts);
    }
    const trimmed = text.trim();
    if (trimmed !== text) return classifyIp(trimmed) !== undefined ? { ip: text, class: "skipped", reason: "not_canonical" } : undefined;
    // A failed attempt at IPv6 (`::ffff:127.1`, `1::2::3`) is skipped, not dropped as a name.
    if (V6ISH.test(addr) && addr.indexOf(":") !== addr.lastIndexOf(":")) return { ip: text, class: "skipped", reason: "not_canonical" };
    return undefined;
  }
  const trimmed = text.trim();
  if (trimmed !== text) return classifyIp(trimmed) !== undefined ? { ip: text, class: "skipped", reason: "not_canonical" } : undefined;
  if (looksV4(text)) return { ip: text, class: "skipped", reason: "not_canonical" };
  return undefined;
}
