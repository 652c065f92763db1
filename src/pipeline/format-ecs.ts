/**
 * `format` for Elastic: ECS fields added to the original record (design.md,
 * "Output → ECS"). Pure and on the hot path: objects are built with plain
 * property writes, never spread or JSON round trips.
 *
 * Merge rules (add-only):
 * - The input is never mutated: the top level is copied, and so is every
 *   nested object that gets a new key (`dns`, `destination`, `destination.geo`…).
 * - A key already present in the original keeps its original value
 *   (`dns.resolved_ip` of an ECS event, an existing `dnsgeo.status`…).
 * - When `dns`, `destination`, `dnsgeo` (or a nested key under them) exists
 *   but is not a plain object, nothing is added under it.
 * - When the original already has a `destination.ip` other than the primary
 *   answer, no `destination.*` is added: geo for another IP would lie about it.
 * - `dns.resolved_ip` lists the canonical answer IPs, public and special-purpose
 *   alike (ECS: "all IPs seen in answers.data"); answers skipped as
 *   `not_canonical` or `zone_id` are left out because their text is not an IP an
 *   `ip`-typed field accepts. They still appear in `dnsgeo.answers` with a reason.
 * - Absent values are omitted, never `null` or `""`; empty objects are omitted.
 */
import type { Config } from "../config.js";
import type { GeoInfo, IpResult } from "../lookup/lookup.js";
import { answerView, recordStatus } from "./status.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";

type Obj = Record<string, unknown>;
type GeoPoint = Config["output"]["geo_point"];

/** CloudWatch Logs envelope metadata a parser may attach to a record. */
interface EnvelopeMeta {
  logGroup?: unknown;
  logStream?: unknown;
}

function isPlain(v: unknown): v is Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * The object under `key` of `parent` to add keys into: a fresh copy of an
 * existing plain object, a new object when absent, undefined when the key holds
 * something else. The copy is written back into `parent` (itself a copy).
 */
function child(parent: Obj, key: string): Obj | undefined {
  const cur = parent[key];
  if (cur === undefined) {
    const o: Obj = {};
    parent[key] = o;
    return o;
  }
  if (!isPlain(cur)) return undefined;
  const o = Object.assign({}, cur);
  parent[key] = o;
  return o;
}

/** Writes `v` under `k` unless the key is already set. */
function add(o: Obj, k: string, v: unknown): void {
  if (o[k] === undefined) o[k] = v;
}

function str(v: string | undefined): v is string {
  return typeof v === "string" && v !== "";
}

function num(v: number | undefined): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** An ECS `geo_point` in the configured encoding; undefined unless lat and lon are both numbers. */
export function geoPoint(lat: number | undefined, lon: number | undefined, enc: GeoPoint): unknown {
  if (!num(lat) || !num(lon)) return undefined;
  switch (enc) {
    case "string":
      return `${lat},${lon}`;
    case "array":
      return [lon, lat];
    case "wkt":
      return `POINT (${lon} ${lat})`;
    default:
      return { lat, lon };
  }
}

/** Writes the ECS geo fields of `g` into `geo` (add-only). */
function fillGeo(geo: Obj, g: GeoInfo, enc: GeoPoint): void {
  const loc = geoPoint(g.lat, g.lon, enc);
  if (loc !== undefined) add(geo, "location", loc);
  if (str(g.countryCode)) add(geo, "country_iso_code", g.countryCode);
  if (str(g.country)) add(geo, "country_name", g.country);
  if (str(g.regionCode)) add(geo, "region_iso_code", g.regionCode);
  if (str(g.regionName)) add(geo, "region_name", g.regionName);
  if (str(g.city)) add(geo, "city_name", g.city);
  if (str(g.postalCode)) add(geo, "postal_code", g.postalCode);
  if (str(g.timezone)) add(geo, "timezone", g.timezone);
  if (str(g.continentCode)) add(geo, "continent_code", g.continentCode);
}

function hasKeys(o: Obj): boolean {
  for (const _ in o) return true;
  return false;
}

/** ECS `as` object for a GeoInfo, or undefined when it has neither number nor organization. */
function asObject(g: GeoInfo): Obj | undefined {
  const orgName = str(g.asOrg) ? g.asOrg : str(g.org) ? g.org : undefined;
  if (!num(g.asn) && orgName === undefined) return undefined;
  const as: Obj = {};
  if (num(g.asn)) as.number = g.asn;
  if (orgName !== undefined) as.organization = { name: orgName };
  return as;
}

/** Text of an answer suitable for an ECS `ip` field. */
function isIpText(a: AnswerIp): boolean {
  return a.reason !== "not_canonical" && a.reason !== "zone_id";
}

function answerObject(a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint, failed: boolean | undefined): Obj {
  const o: Obj = { ip: a.ip };
  const view = answerView(a, results, failed);
  const e = view.entry;
  if (e && e.geo) {
    const g = e.geo;
    const geo: Obj = {};
    fillGeo(geo, g, enc);
    if (hasKeys(geo)) o.geo = geo;
    const as = asObject(g);
    if (as) o.as = as;
    if (str(g.isp)) o.isp = g.isp;
    if (str(g.org)) o.org = g.org;
    const source = str(g.source) ? g.source : e.src;
    if (str(source)) o.source = source;
    if (e.stale) o.stale = true;
  }
  if (view.reason !== undefined) o.reason = view.reason;
  return o;
}

function addDestination(top: Obj, a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint): void {
  const existing = top.destination;
  if (existing !== undefined && !isPlain(existing)) return;
  if (existing !== undefined && existing.ip !== undefined && existing.ip !== a.ip) return;
  const dest = child(top, "destination") as Obj;
  add(dest, "ip", a.ip);
  const e = results.get(a.ip)?.entry;
  const g = e && !e.neg ? e.geo : undefined;
  if (!g) return;
  if (dest.geo === undefined) {
    const geo: Obj = {};
    fillGeo(geo, g, enc);
    if (hasKeys(geo)) dest.geo = geo;
  } else {
    const geo = child(dest, "geo");
    if (geo) fillGeo(geo, g, enc);
  }
  const as = asObject(g);
  if (!as) return;
  const target = child(dest, "as");
  if (!target) return;
  if (as.number !== undefined) add(target, "number", as.number);
  const name = (as.organization as Obj | undefined)?.name;
  if (name !== undefined) {
    const org = child(target, "organization");
    if (org) add(org, "name", name);
  }
}

function addEnvelope(top: Obj, rec: ParsedRecord): void {
  const env = (rec as ParsedRecord & { envelope?: EnvelopeMeta }).envelope;
  if (!env || typeof env !== "object") return;
  const group = typeof env.logGroup === "string" && env.logGroup !== "" ? env.logGroup : undefined;
  const stream = typeof env.logStream === "string" && env.logStream !== "" ? env.logStream : undefined;
  if (group === undefined && stream === undefined) return;
  const aws = child(top, "aws");
  if (!aws) return;
  const cw = child(aws, "cloudwatch");
  if (!cw) return;
  if (group !== undefined) add(cw, "log_group", group);
  if (stream !== undefined) add(cw, "log_stream", stream);
}

/**
 * The record with ECS fields added: `dns.resolved_ip`, `destination.*` for the
 * primary (first public) answer when `out.destination`, `dnsgeo.status`,
 * `dnsgeo.reason`, `dnsgeo.answers[]`, and `aws.cloudwatch.log_group` /
 * `log_stream` when the record came in a CloudWatch envelope. `failed` says the
 * lookup itself failed (status `error`). Never mutates `rec`.
 */
export function formatEcs(
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed?: boolean,
): Record<string, unknown> {
  const top: Obj = Object.assign({}, rec.record);
  const enc = out.geo_point;
  const answers = ex.answers;

  if (answers.length > 0) {
    const ips: string[] = [];
    for (const a of answers) if (isIpText(a)) ips.push(a.ip);
    if (ips.length > 0) {
      const existing = top.dns;
      if (existing === undefined || (isPlain(existing) && existing.resolved_ip === undefined)) {
        (child(top, "dns") as Obj).resolved_ip = ips;
      }
    }
  }

  if (out.destination) {
    for (const a of answers) {
      if (a.class === "public") {
        addDestination(top, a, results, enc);
        break;
      }
    }
  }

  const dnsgeo = child(top, "dnsgeo");
  if (dnsgeo) {
    const st = recordStatus(ex, results, failed, rec.kind);
    add(dnsgeo, "status", st.status);
    if (st.reason !== undefined) add(dnsgeo, "reason", st.reason);
    if (answers.length > 0) {
      const list: Obj[] = new Array(answers.length);
      for (let i = 0; i < answers.length; i++) list[i] = answerObject(answers[i] as AnswerIp, results, enc, failed);
      add(dnsgeo, "answers", list);
    }
  }

  addEnvelope(top, rec);
  return top;
}

/**
 * A value that is not a DNS record, on its way out in ECS mode: a plain
 * object gets `dnsgeo: {status: "skipped", reason}` (add-only, not mutated);
 * anything else is returned unchanged.
 */
export function passthroughEcs(value: unknown, reason: string): unknown {
  if (!isPlain(value)) return value;
  const top: Obj = Object.assign({}, value);
  const dnsgeo = child(top, "dnsgeo");
  if (dnsgeo) {
    add(dnsgeo, "status", "skipped");
    add(dnsgeo, "reason", reason);
  }
  return top;
}
