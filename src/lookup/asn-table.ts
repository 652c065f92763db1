import { readFileSync } from "node:fs";

/** What the ASN table knows about one address. */
export interface AsnInfo {
  asn: number;
  /** AS organisation name; absent when the data has none. */
  org?: string;
}

const COMMA = 44;
const QUOTE = 34;
const LF = 10;
const CR = 13;

/** Position after the last field read; loader scratch state (loading is synchronous). */
let cursor = 0;
let orgStart = 0;
let orgEnd = 0;
let orgQuoted = false;

/** Unsigned decimal at `p`; -1 when there is none. Leaves `cursor` after it. */
function readUint(b: Uint8Array, p: number): number {
  let v = 0;
  let q = p;
  for (; q < b.length; q++) {
    const d = b[q]! - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  cursor = q;
  return q === p || q - p > 15 ? -1 : v;
}

/** Skips to the byte after the next comma on this line; -1 when the line ends first. */
function skipComma(b: Uint8Array, p: number): number {
  for (; p < b.length; p++) {
    const c = b[p]!;
    if (c === COMMA) return p + 1;
    if (c === LF) return -1;
  }
  return -1;
}

/**
 * Reads the last field of a record at `p` (RFC 4180: a quoted field may hold
 * commas, doubled quotes and line breaks) into `orgStart`/`orgEnd`/`orgQuoted`;
 * returns the offset of the next record.
 */
function readLastField(b: Uint8Array, p: number): number {
  const len = b.length;
  if (p < len && b[p] === QUOTE) {
    const s = ++p;
    while (p < len) {
      if (b[p] === QUOTE) {
        if (p + 1 < len && b[p + 1] === QUOTE) p += 2;
        else break;
      } else p++;
    }
    orgStart = s;
    orgEnd = p;
    orgQuoted = true;
    while (p < len && b[p] !== LF) p++;
    return p + 1;
  }
  const s = p;
  while (p < len && b[p] !== LF) p++;
  orgStart = s;
  orgEnd = p > s && b[p - 1] === CR ? p - 1 : p;
  orgQuoted = false;
  return p + 1;
}

/** Offset of the next record after `p` (used to skip blank or bad lines). */
function nextLine(b: Uint8Array, p: number): number {
  const i = b.indexOf(LF, p);
  return i < 0 ? b.length : i + 1;
}

/** Dotted quad in `b[from, to)` as an unsigned 32-bit number, or -1. */
function parseV4Bytes(b: Uint8Array, from: number, to: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      const d = c - 48;
      if (d < 0 || d > 9 || digits === 3) return -1;
      part = part * 10 + d;
      if (part > 255) return -1;
      digits++;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const groups = new Uint16Array(8);

/**
 * IPv6 text in `b[from, to)` (compressed or not, embedded IPv4 tail allowed, no
 * zone id) as four big-endian 32-bit words in `out`. False when it is not IPv6.
 */
function parseV6Bytes(b: Uint8Array, from: number, to: number, out: Uint32Array): boolean {
  if (to - from < 2) return false;
  let n = 0;
  let gap = -1;
  let i = from;
  if (b[i] === 58) {
    if (b[i + 1] !== 58) return false;
    gap = 0;
    i += 2;
  }
  while (i < to) {
    if (n === 8) return false;
    const start = i;
    let v = 0;
    let digits = 0;
    while (i < to) {
      const h = hexValue(b[i]!);
      if (h < 0) break;
      v = v * 16 + h;
      digits++;
      i++;
    }
    if (i < to && b[i] === 46) {
      if (n > 6) return false;
      const v4 = parseV4Bytes(b, start, to);
      if (v4 < 0) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      i = to;
      break;
    }
    if (digits === 0 || digits > 4) return false;
    groups[n++] = v;
    if (i === to) break;
    if (b[i] !== 58) return false;
    i++;
    if (i < to && b[i] === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === to) {
      return false;
    }
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else {
    if (n === 8) return false;
    const tail = n - gap;
    for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k]!;
    for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  }
  for (let k = 0; k < 4; k++) out[k] = ((groups[2 * k]! << 16) | groups[2 * k + 1]!) >>> 0;
  return true;
}

/** Longest text an IP can be (IPv6 with an IPv4 tail is 45). */
const textScratch = new Uint8Array(64);

/** Copies ASCII `s` into the scratch buffer; its length, or -1 when it can't be an IP. */
function toScratch(s: string): number {
  const n = s.length;
  if (n > textScratch.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return -1;
    textScratch[i] = c;
  }
  return n;
}

/** IPv4 text as an unsigned 32-bit number, or -1 when it is not a dotted quad. */
export function parseIpv4(s: string): number {
  const n = toScratch(s);
  return n < 0 ? -1 : parseV4Bytes(textScratch, 0, n);
}

/**
 * Parses IPv6 text (compressed or not, embedded IPv4 tail allowed, no zone id)
 * into four big-endian 32-bit words in `out`. Returns false when `s` is not IPv6.
 */
export function parseIpv6(s: string, out: Uint32Array): boolean {
  const n = toScratch(s);
  return n >= 0 && parseV6Bytes(textScratch, 0, n, out);
}

const NO_ORG = 0xffffffff;

interface OrgRef {
  buf: Uint8Array;
  start: number;
  end: number;
  id: number;
}

/**
 * Deduplicates AS organisation names. Most rows repeat the name already seen
 * for their AS number, so the raw bytes are compared against that first and a
 * string is decoded only for names not seen yet; this keeps loading fast.
 */
class OrgTable {
  readonly names: string[] = [];
  private readonly byName = new Map<string, number>();
  private readonly byAsn = new Map<number, OrgRef>();

  /** Id of the org in the current `orgStart`/`orgEnd` field of `buf`. */
  id(buf: Buffer, asn: number): number {
    const s = orgStart;
    const e = orgEnd;
    if (e <= s) return NO_ORG;
    const ref = this.byAsn.get(asn);
    if (ref !== undefined && sameBytes(ref.buf, ref.start, ref.end, buf, s, e)) return ref.id;
    let name = buf.toString("utf8", s, e);
    if (orgQuoted && name.includes('"')) name = name.replaceAll('""', '"');
    let id = this.byName.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.byName.set(name, id);
    }
    if (ref === undefined) this.byAsn.set(asn, { buf, start: s, end: e, id });
    return id;
  }
}

function sameBytes(a: Uint8Array, as: number, ae: number, b: Uint8Array, bs: number, be: number): boolean {
  if (ae - as !== be - bs) return false;
  for (let i = 0; i < ae - as; i++) if (a[as + i] !== b[bs + i]) return false;
  return true;
}

function badRow(path: string, offset: number, why: string): Error {
  return new Error(`ASN table ${path}: bad row at byte ${offset}: ${why}`);
}

/** -1, 0, 1 comparing the 128-bit value at `a[ai..ai+3]` with `b[0..3]`. */
function cmp128(a: Uint32Array, ai: number, b: Uint32Array): number {
  for (let k = 0; k < 4; k++) {
    const x = a[ai + k]!;
    const y = b[k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function grow(a: Uint32Array, size: number): Uint32Array<ArrayBuffer> {
  const g = new Uint32Array(size);
  g.set(a);
  return g;
}

const lookupWords = new Uint32Array(4);

/**
 * IP → AS number and AS organisation, from the `@ip-location-db/asn` CSVs
 * (`start,end,asn,org`, inclusive ranges, sorted by start), held in typed
 * arrays and binary-searched. IPv4 comes from the numeric file; IPv6 from the
 * text file, because parsing 128-bit decimals needs BigInt and is slower than
 * parsing the addresses.
 */
export class AsnTable {
  private constructor(
    private readonly v4Start: Uint32Array,
    private readonly v4End: Uint32Array,
    private readonly v4Asn: Uint32Array,
    private readonly v4Org: Uint32Array,
    /** Four words per row. */
    private readonly v6Start: Uint32Array,
    private readonly v6End: Uint32Array,
    private readonly v6Asn: Uint32Array,
    private readonly v6Org: Uint32Array,
    private readonly orgs: readonly string[],
  ) {}

  /** Rows loaded per family. */
  get counts(): { v4: number; v6: number; orgs: number } {
    return { v4: this.v4Start.length, v6: this.v6Asn.length, orgs: this.orgs.length };
  }

  /**
   * Loads both files synchronously (a few hundred milliseconds for the bundled data).
   * @param v4Path CSV with numeric IPv4 bounds (`asn-ipv4-num.csv`).
   * @param v6Path CSV with IPv6 text bounds (`asn-ipv6.csv`).
   */
  static load(v4Path: string, v6Path: string): AsnTable {
    const orgs = new OrgTable();

    const b4 = readFileSync(v4Path);
    // The shortest real rows are ~30 bytes; arrays grow if the guess is short.
    let cap = Math.max(16, Math.ceil(b4.length / 32));
    let start4 = new Uint32Array(cap);
    let end4 = new Uint32Array(cap);
    let asn4 = new Uint32Array(cap);
    let org4 = new Uint32Array(cap);
    let n4 = 0;
    for (let p = 0; p < b4.length; ) {
      const row = p;
      const s = readUint(b4, p);
      if (s < 0) {
        if (b4[p] === LF || b4[p] === CR) {
          p = nextLine(b4, p);
          continue;
        }
        throw badRow(v4Path, row, "range start is not a number");
      }
      if (b4[cursor] !== COMMA) throw badRow(v4Path, row, "expected a comma");
      const e = readUint(b4, cursor + 1);
      if (b4[cursor] !== COMMA) throw badRow(v4Path, row, "expected a comma");
      const a = readUint(b4, cursor + 1);
      if (e < s || e > 0xffffffff || a < 0 || a > 0xffffffff) throw badRow(v4Path, row, "bad range or AS number");
      if (b4[cursor] === COMMA) {
        p = readLastField(b4, cursor + 1);
      } else {
        orgEnd = orgStart;
        p = nextLine(b4, cursor);
      }
      if (n4 > 0) {
        if (s < start4[n4 - 1]!) throw badRow(v4Path, row, "not sorted by start");
        // Overlapping rows exist in the published data; the later, more specific row wins.
        if (s <= end4[n4 - 1]!) end4[n4 - 1] = s - 1;
      }
      if (n4 === cap) {
        cap *= 2;
        start4 = grow(start4, cap);
        end4 = grow(end4, cap);
        asn4 = grow(asn4, cap);
        org4 = grow(org4, cap);
      }
      start4[n4] = s;
      end4[n4] = e;
      asn4[n4] = a;
      org4[n4] = orgs.id(b4, a);
      n4++;
    }

    const b6 = readFileSync(v6Path);
    cap = Math.max(16, Math.ceil(b6.length / 48));
    let start6 = new Uint32Array(cap * 4);
    let end6 = new Uint32Array(cap * 4);
    let asn6 = new Uint32Array(cap);
    let org6 = new Uint32Array(cap);
    const sw = new Uint32Array(4);
    const ew = new Uint32Array(4);
    let n6 = 0;
    for (let p = 0; p < b6.length; ) {
      const row = p;
      if (b6[p] === LF || b6[p] === CR) {
        p = nextLine(b6, p);
        continue;
      }
      const c1 = skipComma(b6, p);
      const c2 = c1 < 0 ? -1 : skipComma(b6, c1);
      if (c2 < 0) throw badRow(v6Path, row, "fewer than 3 fields");
      const a = readUint(b6, c2);
      if (!parseV6Bytes(b6, p, c1 - 1, sw) || !parseV6Bytes(b6, c1, c2 - 1, ew) || cmp128(ew, 0, sw) < 0) {
        throw badRow(v6Path, row, "bad range");
      }
      if (a < 0 || a > 0xffffffff) throw badRow(v6Path, row, "bad AS number");
      if (b6[cursor] === COMMA) {
        p = readLastField(b6, cursor + 1);
      } else {
        orgEnd = orgStart;
        p = nextLine(b6, cursor);
      }
      if (n6 > 0) {
        const prev = (n6 - 1) * 4;
        if (cmp128(start6, prev, sw) > 0) throw badRow(v6Path, row, "not sorted by start");
        if (cmp128(end6, prev, sw) >= 0) {
          // Clip the previous row to end just before this one starts (128-bit minus one).
          let borrow = true;
          for (let k = 3; k >= 0; k--) {
            const w = sw[k]!;
            end6[prev + k] = borrow ? (w - 1) >>> 0 : w;
            if (w !== 0) borrow = false;
          }
        }
      }
      if (n6 === cap) {
        cap *= 2;
        start6 = grow(start6, cap * 4);
        end6 = grow(end6, cap * 4);
        asn6 = grow(asn6, cap);
        org6 = grow(org6, cap);
      }
      start6.set(sw, n6 * 4);
      end6.set(ew, n6 * 4);
      asn6[n6] = a;
      org6[n6] = orgs.id(b6, a);
      n6++;
    }

    return new AsnTable(
      start4.slice(0, n4),
      end4.slice(0, n4),
      asn4.slice(0, n4),
      org4.slice(0, n4),
      start6.slice(0, n6 * 4),
      end6.slice(0, n6 * 4),
      asn6.slice(0, n6),
      org6.slice(0, n6),
      orgs.names,
    );
  }

  /**
   * AS of a canonical IP text (IPv4 dotted quad or IPv6; IPv4-mapped IPv6 is
   * looked up as IPv4). Undefined when no range holds it or the text is not an IP.
   */
  lookup(ip: string): AsnInfo | undefined {
    if (ip.indexOf(":") < 0) {
      const v = parseIpv4(ip);
      return v < 0 ? undefined : this.lookupV4(v);
    }
    const w = lookupWords;
    if (!parseIpv6(ip, w)) return undefined;
    if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return this.lookupV4(w[3]!);
    return this.lookupV6(w);
  }

  private lookupV4(v: number): AsnInfo | undefined {
    const starts = this.v4Start;
    let lo = 0;
    let hi = starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= v) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0 || v > this.v4End[found]!) return undefined;
    return this.info(this.v4Asn[found]!, this.v4Org[found]!);
  }

  private lookupV6(w: Uint32Array): AsnInfo | undefined {
    const starts = this.v6Start;
    let lo = 0;
    let hi = this.v6Asn.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp128(starts, mid * 4, w) <= 0) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0 || cmp128(this.v6End, found * 4, w) < 0) return undefined;
    return this.info(this.v6Asn[found]!, this.v6Org[found]!);
  }

  private info(asn: number, orgId: number): AsnInfo {
    const org = orgId === NO_ORG ? undefined : this.orgs[orgId];
    return org === undefined ? { asn } : { asn, org };
  }
}
