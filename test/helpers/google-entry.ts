/**
 * Lookup results and a parsed Route 53 record for the formatter tests: Google Public DNS
 * in Mountain View as ip-api gives it, and a query for dns.google. with given answers.
 */
import type { Entry, GeoInfo } from "../../src/lookup/lookup.js";
import type { ParsedRecord } from "../../src/pipeline/types.js";

/** Geo for `ip` as Google Public DNS in Mountain View (lat 37.4, lon -122.1, fetched at 1); `extra` changes fields. */
export function googleGeo(ip: string, extra: Partial<GeoInfo> = {}): GeoInfo {
  return {
    ip,
    countryCode: "US",
    country: "United States",
    regionCode: "CA",
    regionName: "California",
    city: "Mountain View",
    postalCode: "94043",
    lat: 37.4,
    lon: -122.1,
    timezone: "America/Los_Angeles",
    continentCode: "NA",
    asn: 15169,
    asOrg: "Google LLC",
    org: "Google Public DNS",
    isp: "Google LLC",
    source: "ip-api",
    fetchedAt: 1,
    ...extra,
  };
}

/** An ip-api entry for `ip` with `googleGeo(ip, geo)`, fetched at 1 and expiring at 2; `extra` changes entry fields. */
export function googleEntry(ip: string, geo: Partial<GeoInfo> = {}, extra: Partial<Entry> = {}): Entry {
  return { ip, geo: googleGeo(ip, geo), src: "ip-api", fetchedAt: 1, expiresAt: 2, ...extra };
}

/** A parsed Route 53 record for dns.google. with these answers (type A, AAAA for an IPv6 one) and `srcids`. */
export function route53Parsed(answers: string[], srcids: Record<string, string> = { instance: "i-0abc" }): ParsedRecord {
  return {
    kind: "route53",
    record: {
      version: "1.100000",
      query_name: "dns.google.",
      srcids,
      answers: answers.map((a) => ({ Rdata: a, Type: a.includes(":") ? "AAAA" : "A", Class: "IN" })),
    },
    queryName: "dns.google.",
    answers,
  };
}
