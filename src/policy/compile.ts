/**
 * Policy rules compiled once into a matcher: country, ASN and exact-name sets, one
 * regular expression per pattern, CIDRs as per-prefix-length maps of masked networks
 * (an IP is looked up once per prefix length in use, with bit math on the address, no
 * parsing library), query suffixes as label-boundary suffix checks. What an answer
 * matches depends only on its IP and entry, so it is remembered per entry object for
 * the life of the compiled rules (a reload compiles afresh).
 */
import type { Entry, GeoInfo, IpResult } from "../lookup/lookup.js";
import type { PolicyRule } from "../config.js";
import type { PolicyAnswer, PolicyHit, PolicyRecord, RecordPolicy } from "./types.js";

/** A rule that cannot be compiled (bad CIDR or pattern, duplicate name); the message names it. */
export class PolicyRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyRuleError";
  }
}

/** Text matcher of `as_orgs`, `isps`, `orgs`: exact (case-insensitive), `*` globs, `/regex/flags`. */
interface TextMatcher {
  exact: Set<string>;
  patterns: RegExp[];
}

interface CompiledRule {
  name: string;
  tag: string;
  countries?: Set<string>;
  /** `CC-RR` codes, upper case. */
  regionCodes?: Set<string>;
  /** Region names, lower case. */
  regionNames?: Set<string>;
  asns?: Set<number>;
  asOrgs?: TextMatcher;
  isps?: TextMatcher;
  orgs?: TextMatcher;
  hasCidrs: boolean;
  /** Lower case, no trailing dot. */
  suffixes?: string[];
  /** True when the rule has a criterion on the answer (all but query_suffixes). */
  onAnswer: boolean;
  /** True when the rule needs geo data (not only CIDRs). */
  needsGeo: boolean;
}

/** The IPv4 address of canonical dotted text as an unsigned 32-bit number, or undefined. */
export function ipv4Number(s: string): number | undefined {
  // A character loop: this runs for every answer not seen before, so no split or regex.
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return undefined;
    } else if (c === 0x2e && digits > 0 && dots < 3) {
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}

/** The IPv6 address of text (`::` compression and a dotted IPv4 tail allowed) as a 128-bit bigint, or undefined. */
export function ipv6Number(s: string): bigint | undefined {
  if (!s.includes(":")) return undefined;
  let text = s.toLowerCase();
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) !== -1) {
    // A dotted IPv4 tail (`::ffff:1.2.3.4`) is two groups.
    const v4 = ipv4Number(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const parse = (h: string): number[] | undefined => {
    if (h === "") return [];
    const out: number[] = [];
    for (const g of h.split(":")) {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] as string);
  const rest = halves.length === 2 ? parse(halves[1] as string) : [];
  if (!head || !rest) return undefined;
  if (head.length + rest.length > (halves.length === 2 ? 7 : 8)) return undefined;
  const groups = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest] : head;
  if (groups.length !== 8) return undefined;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

const V6_ALL = (1n << 128n) - 1n;

function maskV4(n: number, len: number): number {
  return len === 0 ? 0 : (n & (0xffffffff << (32 - len))) >>> 0;
}

function maskV6(n: bigint, len: number): bigint {
  return len === 0 ? 0n : n & (V6_ALL ^ ((1n << BigInt(128 - len)) - 1n));
}

/** CIDRs of every rule: per prefix length, masked network → indexes of the rules that list it. */
class CidrIndex {
  private readonly v4 = new Map<number, Map<number, number[]>>();
  private readonly v6 = new Map<number, Map<bigint, number[]>>();
  private v4Lens: number[] = [];
  private v6Lens: number[] = [];

  add(cidr: string, rule: number, ruleName: string): void {
    const slash = cidr.indexOf("/");
    const addr = slash === -1 ? cidr.trim() : cidr.slice(0, slash).trim();
    const lenText = slash === -1 ? undefined : cidr.slice(slash + 1).trim();
    const v4 = ipv4Number(addr);
    const v6 = v4 === undefined ? ipv6Number(addr) : undefined;
    const max = v4 !== undefined ? 32 : 128;
    const len = lenText === undefined ? max : /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
    if ((v4 === undefined && v6 === undefined) || !(len >= 0 && len <= max)) throw new PolicyRuleError(`rule ${ruleName}: "${cidr}" is not a CIDR (a.b.c.d/n or an IPv6 prefix)`);
    const push = <K>(m: Map<number, Map<K, number[]>>, key: K): void => {
      let byNet = m.get(len);
      if (!byNet) m.set(len, (byNet = new Map()));
      const list = byNet.get(key);
      if (!list) byNet.set(key, [rule]);
      else if (!list.includes(rule)) list.push(rule);
    };
    if (v4 !== undefined) push(this.v4, maskV4(v4, len));
    else push(this.v6, maskV6(v6 as bigint, len));
    this.v4Lens = [...this.v4.keys()];
    this.v6Lens = [...this.v6.keys()];
  }

  /** Marks in `into` the rules whose CIDRs hold `ip`. */
  rulesOf(ip: string, into: Uint8Array): void {
    if (this.v4Lens.length > 0 && !ip.includes(":")) {
      const n = ipv4Number(ip);
      if (n === undefined) return;
      for (const len of this.v4Lens) {
        const hit = this.v4.get(len)?.get(maskV4(n, len));
        if (hit) for (const r of hit) into[r] = 1;
      }
    } else if (this.v6Lens.length > 0 && ip.includes(":")) {
      const n = ipv6Number(ip);
      if (n === undefined) return;
      for (const len of this.v6Lens) {
        const hit = this.v6.get(len)?.get(maskV6(n, len));
        if (hit) for (const r of hit) into[r] = 1;
      }
    }
  }

  get empty(): boolean {
    return this.v4.size === 0 && this.v6.size === 0;
  }
}

function textMatcher(list: readonly string[] | undefined, ruleName: string, field: string): TextMatcher | undefined {
  if (!list) return undefined;
  const m: TextMatcher = { exact: new Set(), patterns: [] };
  for (const p of list) {
    const re = /^\/(.*)\/([a-z]*)$/s.exec(p);
    if (re) {
      try {
        m.patterns.push(new RegExp(re[1] as string, (re[2] as string).replace(/[gy]/g, "")));
      } catch (e) {
        throw new PolicyRuleError(`rule ${ruleName}: ${field} pattern ${p} is not a valid regular expression (${(e as Error).message})`);
      }
    } else if (p.includes("*")) {
      const body = p
        .split("*")
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
        .join(".*");
      m.patterns.push(new RegExp(`^${body}$`, "is"));
    } else m.exact.add(p.toLowerCase());
  }
  return m;
}

function textMatches(m: TextMatcher, v: string | undefined): boolean {
  if (typeof v !== "string" || v === "") return false;
  if (m.exact.has(v.toLowerCase())) return true;
  for (const re of m.patterns) if (re.test(v)) return true;
  return false;
}

function normName(s: string): string {
  const l = s.trim().toLowerCase();
  return l.endsWith(".") ? l.slice(0, -1) : l;
}

function suffixMatches(suffixes: readonly string[], name: string | undefined): boolean {
  if (typeof name !== "string" || name === "") return false;
  const n = normName(name);
  for (const s of suffixes) if (n === s || (n.endsWith(s) && n.charCodeAt(n.length - s.length - 1) === 0x2e)) return true;
  return false;
}

/** Answers whose text is an IP (the same ones `dns.resolved_ip` lists, plus resolved ones). */
function isIpText(a: PolicyAnswer): boolean {
  return a.reason !== "not_canonical" && a.reason !== "zone_id";
}

const NONE: readonly number[] = [];

/** Compiled rules: `match` gives a record's tags. Immutable; a reload builds a new one. */
export class CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  private readonly cidrs = new CidrIndex();
  private readonly answerRules: number[];
  private readonly nameRules: number[];
  private readonly byEntry = new WeakMap<Entry, readonly number[]>();
  private readonly mark: Uint8Array;

  constructor(rules: readonly PolicyRule[]) {
    const seen = new Set<string>();
    const out: CompiledRule[] = [];
    rules.forEach((r, i) => {
      if (seen.has(r.name)) throw new PolicyRuleError(`rule name ${r.name} is used twice`);
      seen.add(r.name);
      const regionCodes = r.regions?.filter((x) => /^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$/.test(x)).map((x) => x.toUpperCase());
      const regionNames = r.regions?.filter((x) => !/^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$/.test(x)).map((x) => x.toLowerCase());
      for (const c of r.cidrs ?? []) this.cidrs.add(c, i, r.name);
      const c: CompiledRule = {
        name: r.name,
        tag: r.tag,
        hasCidrs: r.cidrs !== undefined,
        onAnswer: [r.countries, r.regions, r.asns, r.as_orgs, r.isps, r.orgs, r.cidrs].some((x) => x !== undefined),
        needsGeo: [r.countries, r.regions, r.asns, r.as_orgs, r.isps, r.orgs].some((x) => x !== undefined),
      };
      if (r.countries) c.countries = new Set(r.countries.map((x) => x.toUpperCase()));
      if (r.regions) {
        c.regionCodes = new Set(regionCodes);
        c.regionNames = new Set(regionNames);
      }
      if (r.asns) c.asns = new Set(r.asns);
      const asOrgs = textMatcher(r.as_orgs, r.name, "as_orgs");
      if (asOrgs) c.asOrgs = asOrgs;
      const isps = textMatcher(r.isps, r.name, "isps");
      if (isps) c.isps = isps;
      const orgs = textMatcher(r.orgs, r.name, "orgs");
      if (orgs) c.orgs = orgs;
      if (r.query_suffixes) c.suffixes = r.query_suffixes.map(normName);
      out.push(c);
    });
    this.rules = out;
    this.answerRules = out.flatMap((r, i) => (r.onAnswer ? [i] : []));
    this.nameRules = out.flatMap((r, i) => (r.onAnswer ? [] : [i]));
    this.mark = new Uint8Array(out.length);
  }

  get size(): number {
    return this.rules.length;
  }

  /** Indexes of the rules whose answer criteria hold for `ip` with `geo` (query suffixes not checked). */
  private answerMatches(ip: string, geo: GeoInfo | undefined): readonly number[] {
    const mark = this.mark;
    mark.fill(0);
    if (!this.cidrs.empty) this.cidrs.rulesOf(ip, mark);
    let out: number[] | undefined;
    for (const i of this.answerRules) {
      const r = this.rules[i] as CompiledRule;
      if (r.hasCidrs && mark[i] !== 1) continue;
      if (r.needsGeo) {
        if (!geo) continue;
        if (r.countries && !(typeof geo.countryCode === "string" && r.countries.has(geo.countryCode.toUpperCase()))) continue;
        if (r.regionCodes && r.regionNames) {
          const code = typeof geo.countryCode === "string" && typeof geo.regionCode === "string" ? `${geo.countryCode}-${geo.regionCode}`.toUpperCase() : undefined;
          const name = typeof geo.regionName === "string" ? geo.regionName.toLowerCase() : undefined;
          if (!((code !== undefined && r.regionCodes.has(code)) || (name !== undefined && r.regionNames.has(name)))) continue;
        }
        if (r.asns && !(typeof geo.asn === "number" && r.asns.has(geo.asn))) continue;
        if (r.asOrgs && !textMatches(r.asOrgs, geo.asOrg)) continue;
        if (r.isps && !textMatches(r.isps, geo.isp)) continue;
        if (r.orgs && !textMatches(r.orgs, geo.org)) continue;
      }
      (out ??= []).push(i);
    }
    return out ?? NONE;
  }

  private answerRulesOf(a: PolicyAnswer, results: ReadonlyMap<string, IpResult>): readonly number[] {
    const e = a.class === "public" ? results.get(a.ip)?.entry : undefined;
    if (e === undefined) return this.answerMatches(a.ip, undefined);
    let hit = this.byEntry.get(e);
    if (hit === undefined) {
      hit = this.answerMatches(a.ip, e.neg ? undefined : e.geo);
      this.byEntry.set(e, hit);
    }
    return hit;
  }

  /** The record's policy, or undefined when no rule matched. Geo criteria use whatever entry the answer has (final, offline or stale). */
  match(rec: PolicyRecord, answers: readonly PolicyAnswer[], results: ReadonlyMap<string, IpResult>): RecordPolicy | undefined {
    let hits: PolicyHit[] | undefined;
    let answerTags: Array<readonly string[] | undefined> | undefined;
    let matched: Set<number> | undefined;
    if (this.answerRules.length > 0) {
      for (let k = 0; k < answers.length; k++) {
        const a = answers[k] as PolicyAnswer;
        if (!isIpText(a)) continue;
        const rs = this.answerRulesOf(a, results);
        if (rs.length === 0) continue;
        let tags: string[] | undefined;
        for (const i of rs) {
          const r = this.rules[i] as CompiledRule;
          if (r.suffixes && !suffixMatches(r.suffixes, rec.queryName)) continue;
          (hits ??= []).push({ rule: r.name, tag: r.tag, ip: a.ip });
          (matched ??= new Set()).add(i);
          tags ??= [];
          if (!tags.includes(r.tag)) tags.push(r.tag);
        }
        if (tags) {
          answerTags ??= new Array<readonly string[] | undefined>(answers.length);
          answerTags[k] = tags;
        }
      }
    }
    for (const i of this.nameRules) {
      const r = this.rules[i] as CompiledRule;
      if (r.suffixes && suffixMatches(r.suffixes, rec.queryName)) {
        (hits ??= []).push({ rule: r.name, tag: r.tag });
        (matched ??= new Set()).add(i);
      }
    }
    if (!hits || !matched) return undefined;
    const tags: string[] = [];
    for (const i of [...matched].sort((x, y) => x - y)) {
      const t = (this.rules[i] as CompiledRule).tag;
      if (!tags.includes(t)) tags.push(t);
    }
    return { tags, hits, answerTags: answerTags ?? new Array<undefined>(answers.length) };
  }

  /** Names of the rules that matched, once each (for the counters). */
  static ruleNames(p: RecordPolicy): string[] {
    const names: string[] = [];
    for (const h of p.hits) if (!names.includes(h.rule)) names.push(h.rule);
    return names;
  }
}
