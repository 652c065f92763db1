/**
 * fast-check arbitraries for the ECS formatters' equivalence tests: records, answer IPs
 * of every class, and lookup results (final or not, positive, negative or stale entries,
 * any subset of geo fields) for the public ones.
 */
import fc from "fast-check";
import type { Entry, GeoInfo, IpResult } from "../../src/lookup/lookup.js";

export const IPS = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "10.0.0.1", "::ffff:8.8.4.4", "127.1", "fe80::1%eth0", "www.example.com."];
export const PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "8.8.4.4"];

const optStr = fc.option(fc.constantFrom("", "US", "Zürich", 'quo"te', "a\\b"), { nil: undefined });
const optNum = fc.option(fc.oneof(fc.double({ min: -180, max: 180, noNaN: true }), fc.integer()), { nil: undefined });
export const geoArb = (ip: string): fc.Arbitrary<GeoInfo> =>
  fc.record({
    ip: fc.constant(ip),
    countryCode: optStr,
    country: optStr,
    regionCode: optStr,
    regionName: optStr,
    city: optStr,
    postalCode: optStr,
    lat: optNum,
    lon: optNum,
    timezone: optStr,
    continentCode: optStr,
    asn: fc.option(fc.integer({ min: 0, max: 400000 }), { nil: undefined }),
    asOrg: optStr,
    org: optStr,
    isp: optStr,
    source: fc.constantFrom("ip-api", "mmdb", ""),
    fetchedAt: fc.constant(1_790_000_000),
  }, { requiredKeys: ["ip", "source", "fetchedAt"] });

export const resultArb = (ip: string): fc.Arbitrary<IpResult | undefined> =>
  fc.option(
    fc.record({
      final: fc.boolean(),
      entry: fc.option(
        fc.record({
          ip: fc.constant(ip),
          geo: fc.option(geoArb(ip), { nil: undefined }),
          neg: fc.option(fc.boolean(), { nil: undefined }),
          stale: fc.option(fc.boolean(), { nil: undefined }),
          src: fc.constantFrom("ip-api", "mmdb"),
          fetchedAt: fc.constant(1_790_000_000),
          expiresAt: fc.constant(1_800_000_000),
        }, { requiredKeys: ["ip", "src", "fetchedAt", "expiresAt"] }) as fc.Arbitrary<Entry>,
        { nil: undefined },
      ),
    }, { requiredKeys: ["final"] }),
    { nil: undefined },
  );

export const resultsArb = fc.tuple(...PUBLIC.map(resultArb)).map((rs) => {
  const m = new Map<string, IpResult>();
  rs.forEach((r, i) => r && m.set(PUBLIC[i] as string, r));
  return m;
});

const key = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom("dns", "destination", "dnsgeo", "aws", "__proto__", "query_name"));
export const recordArb = fc.dictionary(key, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 });

/** Up to five answers, each one of `IPS`. */
export const answersArb = fc.array(fc.constantFrom(...IPS), { maxLength: 5 });
/** Each form of `output.geo_point`. */
export const geoPointArb = fc.constantFrom<"object" | "string" | "array" | "wkt">("object", "string", "array", "wkt");
/** For each of five answers, whether it came from the optional resolve step. */
export const viaResolveArb = fc.array(fc.boolean(), { minLength: 5, maxLength: 5 });
