/**
 * A fixed GeoService for golden tests: hand-written answers for the public IPs
 * the fixtures use, so expected outputs don't move when offline data updates.
 */
import type { GeoInfo, GeoService, IpResult } from "../../src/lookup/lookup.js";

const FETCHED = 1_790_000_000;

function g(ip: string, rest: Omit<GeoInfo, "ip" | "source" | "fetchedAt">): GeoInfo {
  return Object.assign({ ip, source: "ip-api", fetchedAt: FETCHED }, rest);
}

export const FIXTURE_GEO: ReadonlyMap<string, GeoInfo> = new Map(
  [
    g("8.8.8.8", { countryCode: "US", country: "United States", regionCode: "VA", regionName: "Virginia", city: "Ashburn", postalCode: "20149", lat: 39.03, lon: -77.5, timezone: "America/New_York", continentCode: "NA", asn: 15169, asOrg: "Google LLC", org: "Google Public DNS", isp: "Google LLC" }),
    g("1.1.1.1", { countryCode: "AU", country: "Australia", regionCode: "QLD", regionName: "Queensland", city: "South Brisbane", postalCode: "4101", lat: -27.4766, lon: 153.0166, timezone: "Australia/Brisbane", continentCode: "OC", asn: 13335, asOrg: "Cloudflare, Inc.", org: "APNIC and Cloudflare DNS Resolver project", isp: "Cloudflare, Inc" }),
    g("142.250.74.46", { countryCode: "DE", country: "Germany", regionCode: "HE", regionName: "Hesse", city: "Frankfurt am Main", postalCode: "60313", lat: 50.1109, lon: 8.6821, timezone: "Europe/Berlin", continentCode: "EU", asn: 15169, asOrg: "Google LLC", org: "Google LLC", isp: "Google LLC" }),
    g("13.107.21.200", { countryCode: "US", country: "United States", regionCode: "WA", regionName: "Washington", city: "Redmond", postalCode: "98052", lat: 47.6801, lon: -122.1206, timezone: "America/Los_Angeles", continentCode: "NA", asn: 8068, asOrg: "Microsoft Corporation", org: "Microsoft Corporation", isp: "Microsoft Corporation" }),
    g("204.79.197.200", { countryCode: "US", country: "United States", regionCode: "WA", regionName: "Washington", city: "Redmond", lat: 47.6801, lon: -122.1206, timezone: "America/Los_Angeles", continentCode: "NA", asn: 8068, asOrg: "Microsoft Corporation", org: "Microsoft Azure", isp: "Microsoft Corporation" }),
    // No city or postal code: ip-api leaves them empty for anycast CDN space.
    g("151.101.1.69", { countryCode: "US", country: "United States", lat: 37.751, lon: -97.822, timezone: "America/Chicago", continentCode: "NA", asn: 54113, asOrg: "Fastly, Inc.", org: "Fastly", isp: "Fastly, Inc." }),
    g("2606:4700:4700::1111", { countryCode: "CA", country: "Canada", regionCode: "ON", regionName: "Ontario", city: "Toronto", postalCode: "M5A", lat: 43.6532, lon: -79.3832, timezone: "America/Toronto", continentCode: "NA", asn: 13335, asOrg: "Cloudflare, Inc.", org: "Cloudflare, Inc.", isp: "Cloudflare, Inc." }),
    g("2a00:1450:4001:82a::200e", { countryCode: "DE", country: "Germany", regionCode: "HE", regionName: "Hesse", city: "Frankfurt am Main", postalCode: "60313", lat: 50.1109, lon: 8.6821, timezone: "Europe/Berlin", continentCode: "EU", asn: 15169, asOrg: "Google LLC", org: "Google LLC", isp: "Google LLC" }),
  ].map((x) => [x.ip, x]),
);

/**
 * Answers from FIXTURE_GEO (final); every IP it is asked for is recorded in
 * `asked`. IPs it doesn't know come back final with no entry ("not_found").
 */
export class FixtureGeoService implements GeoService {
  readonly asked: string[] = [];

  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const out = new Map<string, IpResult>();
    for (const ip of ips) {
      this.asked.push(ip);
      const geo = FIXTURE_GEO.get(ip);
      out.set(ip, geo ? { entry: { ip, geo, src: geo.source, fetchedAt: FETCHED, expiresAt: FETCHED + 86400 }, final: true } : { final: true });
    }
    return out;
  }

  async close(): Promise<void> {}
}
