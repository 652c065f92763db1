/** Synthetic but realistic Route 53 Resolver query log records, and cache entries for them, for benchmarks. */
import type { Entry } from "../src/lookup/lookup.js";

/** A public-looking IPv4 from an index (avoids every special-purpose range). */
export function publicIp(i: number): string {
  // 11.0.0.0/8 .. 99.0.0.0/8 hold no special-purpose ranges except 100.64/10 (not reached).
  const a = 11 + (Math.floor(i / 65536) % 88);
  return `${a}.${Math.floor(i / 256) % 256}.${i % 256}.${1 + (Math.floor(i / 16_777_216) % 250)}`;
}

/** One ~540 B Route 53 record answering with a CNAME and two A records. */
export function route53Record(i: number, distinctIps: number): Record<string, unknown> {
  const ip1 = publicIp(i % distinctIps);
  const ip2 = publicIp((i * 7 + 3) % distinctIps);
  return {
    version: "1.100000",
    account_id: "123456789012",
    region: "us-east-1",
    vpc_id: "vpc-0a1b2c3d4e5f67890",
    query_timestamp: "2026-11-27T10:15:30Z",
    query_name: `host${i % 5000}.example-cdn.net.`,
    query_type: "A",
    query_class: "IN",
    rcode: "NOERROR",
    answers: [
      { Rdata: `edge${i % 97}.cdn.example.net.`, Type: "CNAME", Class: "IN" },
      { Rdata: ip1, Type: "A", Class: "IN" },
      { Rdata: ip2, Type: "A", Class: "IN" },
    ],
    srcaddr: "10.0.1.23",
    srcport: "53411",
    transport: "UDP",
    srcids: { instance: "i-0123456789abcdef0", resolver_endpoint: "rslvr-in-0123456789abcdef" },
  };
}

/** NDJSON text of `n` records over `distinctIps` answer IPs. */
export function route53Ndjson(n: number, distinctIps: number): string {
  const lines: string[] = new Array(n);
  for (let i = 0; i < n; i++) lines[i] = JSON.stringify(route53Record(i, distinctIps));
  return lines.join("\n") + "\n";
}

/** Fresh provider-like cache entries for `publicIp(0 … distinct-1)`. */
export function cacheEntries(distinct: number, now: number = Math.floor(Date.now() / 1000)): Entry[] {
  const out: Entry[] = [];
  for (let i = 0; i < distinct; i++) {
    const ip = publicIp(i);
    out.push({
      ip,
      src: "ip-api",
      fetchedAt: now,
      expiresAt: now + 86400,
      geo: { ip, countryCode: "DE", country: "Germany", regionName: "Hesse", city: "Frankfurt am Main", lat: 50.11, lon: 8.68, asn: 64500 + (i % 10), asOrg: "Example Net", isp: "Example ISP", org: "Example Org", source: "ip-api", fetchedAt: now },
    });
  }
  return out;
}
