/**
 * Enrichment of OCSF DNS Activity records (class 4003) where OCSF puts it, targeting
 * OCSF 1.1.0 (what Amazon Security Lake emits for Route 53 in its source version 2);
 * every object and attribute written exists from 1.0.0 on:
 *
 * - `enrichments[]` (Enrichment object): one entry per answer IP with geo data,
 *   `{name: "answers.rdata", value: <ip>, type: "location", provider: <source>,
 *   data: {location, autonomous_system, isp, org}}`, appended after the record's own;
 * - `dst_endpoint` (Network Endpoint): `ip`, `location` (Geo Location: `city`,
 *   `continent`, `country` (ISO 3166-1 alpha-2), `region`, `postal_code`,
 *   `coordinates` [lon, lat], `isp`, `provider`) and `autonomous_system` (`number`,
 *   `name`) of the primary (first public) answer — only when the record has no
 *   `dst_endpoint`, or one with nothing but that same `ip`. Security Lake's Route 53
 *   records carry the resolver endpoint there (`instance_uid`, `interface_uid`): the
 *   answer's geo would read as the resolver's, so such a record gets `enrichments[]` only.
 *
 * Add-only like ECS: the input is never mutated, original members are kept.
 */
import type { Entry, GeoInfo, IpResult } from "../lookup/lookup.js";
import { copyOf, isPlain } from "./plain-object.js";
import type { AnswerIp, Extracted } from "./types.js";

type Obj = Record<string, unknown>;

const CONTINENTS: Readonly<Record<string, string>> = {
  AF: "Africa",
  AN: "Antarctica",
  AS: "Asia",
  EU: "Europe",
  NA: "North America",
  OC: "Oceania",
  SA: "South America",
};

function str(v: string | undefined): v is string {
  return typeof v === "string" && v !== "";
}

function num(v: number | undefined): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** An OCSF Geo Location object, or undefined when it would be empty. */
export function ocsfLocation(g: GeoInfo, source: string | undefined): Obj | undefined {
  const loc: Obj = {};
  if (str(g.city)) loc.city = g.city;
  const continent = str(g.continentCode) ? CONTINENTS[g.continentCode] : undefined;
  if (continent !== undefined) loc.continent = continent;
  if (str(g.countryCode)) loc.country = g.countryCode;
  // ISO 3166-2: the country code, a hyphen and the subdivision code.
  if (str(g.regionCode) && str(g.countryCode)) loc.region = `${g.countryCode}-${g.regionCode}`;
  if (str(g.postalCode)) loc.postal_code = g.postalCode;
  if (num(g.lat) && num(g.lon)) loc.coordinates = [g.lon, g.lat];
  if (Object.keys(loc).length === 0) return undefined;
  if (str(g.isp)) loc.isp = g.isp;
  if (str(source)) loc.provider = source;
  return loc;
}

/** An OCSF Autonomous System object, or undefined without number and name. */
export function ocsfAs(g: GeoInfo): Obj | undefined {
  const name = str(g.asOrg) ? g.asOrg : str(g.org) ? g.org : undefined;
  if (!num(g.asn) && name === undefined) return undefined;
  const as: Obj = {};
  if (num(g.asn)) as.number = g.asn;
  if (name !== undefined) as.name = name;
  return as;
}

function positive(a: AnswerIp, results: ReadonlyMap<string, IpResult>, failed: boolean | undefined): { e: Entry; g: GeoInfo } | undefined {
  if (a.class !== "public" || a.via !== undefined || failed) return undefined;
  const e = results.get(a.ip)?.entry;
  if (e === undefined || e.neg || e.geo === undefined) return undefined;
  return { e, g: e.geo };
}

/**
 * Writes `enrichments[]` and, where it cannot be mixed with the record's own,
 * `dst_endpoint` into `top` (a copy of the record; nested objects are copied before
 * they are written into).
 */
export function addOcsfEnrichment(top: Obj, ex: Extracted, results: ReadonlyMap<string, IpResult>, failed: boolean | undefined): void {
  const list: Obj[] = [];
  let primaryDone = false;
  for (const a of ex.answers) {
    const p = positive(a, results, failed);
    if (a.class === "public" && a.via === undefined && !primaryDone) {
      primaryDone = true;
      addDstEndpoint(top, a.ip, p?.g, p ? (p.g.source || p.e.src) : undefined);
    }
    if (p === undefined) continue;
    const source = str(p.g.source) ? p.g.source : p.e.src;
    const data: Obj = {};
    const loc = ocsfLocation(p.g, source);
    if (loc) data.location = loc;
    const as = ocsfAs(p.g);
    if (as) data.autonomous_system = as;
    if (str(p.g.isp)) data.isp = p.g.isp;
    if (str(p.g.org)) data.org = p.g.org;
    const en: Obj = { name: "answers.rdata", value: a.ip, type: "location", data };
    if (str(source)) en.provider = source;
    list.push(en);
  }
  if (list.length === 0) return;
  const existing = top.enrichments;
  if (existing === undefined) top.enrichments = list;
  else if (Array.isArray(existing)) top.enrichments = [...(existing as unknown[]), ...list];
  // Anything else under `enrichments` is the record's own: left as it came.
}

function addDstEndpoint(top: Obj, ip: string, g: GeoInfo | undefined, source: string | undefined): void {
  const cur = top.dst_endpoint;
  if (cur !== undefined) {
    if (!isPlain(cur)) return;
    for (const k in cur) if (k !== "ip" || cur.ip !== ip) return;
  }
  const dst: Obj = cur === undefined ? {} : copyOf(cur);
  if (dst.ip === undefined) dst.ip = ip;
  if (g !== undefined) {
    const loc = ocsfLocation(g, source);
    if (loc) dst.location = loc;
    const as = ocsfAs(g);
    if (as) dst.autonomous_system = as;
  }
  top.dst_endpoint = dst;
}
