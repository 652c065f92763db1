import { describe, expect, it } from "vitest";
import type { Config } from "../../../src/config.js";
import type { Entry, IpResult } from "../../../src/lookup/lookup.js";
import { extract } from "../../../src/pipeline/extract.js";
import { formatEcs, geoPoint, passthroughEcs } from "../../../src/pipeline/format-ecs.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";
import { googleEntry as entry, route53Parsed as route53 } from "../../helpers/google-entry.js";

const OUT: Config["output"] = { format: "ecs", explode: false, geo_point: "object", destination: true };

describe("formatEcs", () => {
  it("adds resolved_ip, destination and dnsgeo for a fully enriched record", () => {
    // Prepare
    const rec = route53(["dns.google.", "8.8.8.8", "10.0.0.1"]);
    const ex = extract(rec);
    const results = new Map<string, IpResult>([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]);
    // Act
    const out = formatEcs(rec, ex, results, OUT);
    // Assess
    expect(out.dns).toEqual({ resolved_ip: ["8.8.8.8", "10.0.0.1"] });
    const expectedGeo = {
      location: { lat: 37.4, lon: -122.1 },
      country_iso_code: "US",
      country_name: "United States",
      region_iso_code: "CA",
      region_name: "California",
      city_name: "Mountain View",
      postal_code: "94043",
      timezone: "America/Los_Angeles",
      continent_code: "NA",
    };
    expect(out.destination).toEqual({ ip: "8.8.8.8", geo: expectedGeo, as: { number: 15169, organization: { name: "Google LLC" } } });
    expect(out.dnsgeo).toEqual({
      status: "enriched",
      answers: [
        {
          ip: "8.8.8.8",
          geo: expectedGeo,
          as: { number: 15169, organization: { name: "Google LLC" } },
          isp: "Google LLC",
          org: "Google Public DNS",
          source: "ip-api",
        },
        { ip: "10.0.0.1", reason: "private" },
      ],
    });
    expect(out.query_name).toBe("dns.google.");
    expect(out.answers).toBe(rec.record.answers);
  });

  it("never mutates the input record", () => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    rec.record.dns = { question: { name: "dns.google" } };
    rec.record.destination = { port: 53 };
    rec.record.dnsgeo = { note: "x" };
    const before = structuredClone(rec);
    const results = new Map<string, IpResult>([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]);
    // Act
    const out = formatEcs(rec, extract(rec), results, OUT);
    // Assess
    expect(rec).toEqual(before);
    expect(out.dns).toEqual({ question: { name: "dns.google" }, resolved_ip: ["8.8.8.8"] });
    expect((out.destination as Record<string, unknown>).port).toBe(53);
    expect((out.destination as Record<string, unknown>).ip).toBe("8.8.8.8");
    expect((out.dnsgeo as Record<string, unknown>).note).toBeUndefined();
    expect((out.dnsgeo as Record<string, unknown>).status).toBe("enriched");
    expect(out.dnsgeo_original).toEqual({ note: "x" });
  });

  it("keeps an existing dns.resolved_ip; a record's own dnsgeo moves to dnsgeo_original", () => {
    // Prepare
    const rec: ParsedRecord = {
      kind: "ecs",
      record: { dns: { resolved_ip: ["1.2.3.4"], answers: [{ data: "8.8.8.8" }] }, dnsgeo: { status: "old" } },
      answers: ["8.8.8.8"],
    };
    const before = structuredClone(rec);
    // Act
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), OUT);
    // Assess
    expect((out.dns as Record<string, unknown>).resolved_ip).toEqual(["1.2.3.4"]);
    expect((out.dnsgeo as Record<string, unknown>).status).toBe("enriched");
    expect((out.dnsgeo as Record<string, unknown>).answers).toHaveLength(1);
    expect(out.dnsgeo_original).toEqual({ status: "old" });
    expect(rec).toEqual(before);
  });

  it("keeps an own __proto__ key as data and does not adopt it as the prototype", () => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    rec.record = JSON.parse('{"__proto__":{"dnsgeo":5},"query_name":"q"}') as Record<string, unknown>;
    // Act
    const out = formatEcs(rec, extract(rec), new Map(), OUT);
    // Assess
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    const round = JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(round, "__proto__")).toBe(true);
    expect((round.dnsgeo as Record<string, unknown>).status).toBe("pending");
  });

  it("adds nothing under dns/destination when they are not plain objects; a dnsgeo of any type moves to dnsgeo_original", () => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    rec.record.dns = "udp";
    rec.record.destination = ["x"];
    rec.record.dnsgeo = 7;
    // Act
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), OUT);
    // Assess
    expect(out.dns).toBe("udp");
    expect(out.destination).toEqual(["x"]);
    expect((out.dnsgeo as Record<string, unknown>).status).toBe("enriched");
    expect(out.dnsgeo_original).toBe(7);
  });

  it("leaves destination alone when the original destination.ip is another address", () => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    rec.record.destination = { ip: "192.0.2.53" };
    // Act
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), OUT);
    // Assess
    expect(out.destination).toEqual({ ip: "192.0.2.53" });
  });

  it("leaves a destination that brings its own geo or as exactly as it came: nothing of dnsgeo's is mixed into it", () => {
    for (const destination of [
      { ip: "8.8.8.8", geo: { city_name: "Original" }, as: { organization: { name: "Orig AS" } } },
      { geo: { country_iso_code: "XX" } },
      { ip: "8.8.8.8", as: { number: 1 } },
    ]) {
      // Prepare
      const rec = route53(["8.8.8.8"]);
      rec.record.destination = destination;
      const before = structuredClone(rec);
      // Act
      const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), OUT);
      // Assess
      expect(out.destination).toEqual(destination);
      expect(((out.dnsgeo as { answers: Array<{ geo?: Record<string, unknown> }> }).answers[0]?.geo ?? {}).country_iso_code).toBe("US");
      expect(rec).toEqual(before);
    }
  });

  it("omits destination when out.destination is false", () => {
    const rec = route53(["8.8.8.8"]);
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), { ...OUT, destination: false });
    expect(out.destination).toBeUndefined();
    expect(out.dnsgeo).toBeDefined();
  });

  it("omits absent values: no null, no empty string, no empty objects", () => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    const sparse: Entry = { ip: "8.8.8.8", geo: { ip: "8.8.8.8", countryCode: "US", city: "", source: "mmdb", fetchedAt: 1 }, src: "mmdb", fetchedAt: 1, expiresAt: 2, stale: true };
    // Act
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: sparse, final: false }]]), OUT);
    // Assess
    expect(out.destination).toEqual({ ip: "8.8.8.8", geo: { country_iso_code: "US" } });
    expect(out.dnsgeo).toEqual({ status: "partial", answers: [{ ip: "8.8.8.8", geo: { country_iso_code: "US" }, source: "mmdb", stale: true }] });
    const text = JSON.stringify(out);
    expect(text).not.toContain("null");
    expect(text).not.toContain('""');
    expect(text).not.toContain("{}");
  });

  it("marks pending, not_found and failed answers", () => {
    // Prepare
    const rec = route53(["8.8.8.8", "1.1.1.1"]);
    const ex = extract(rec);
    const negEntry: Entry = { ip: "1.1.1.1", neg: true, src: "ip-api", fetchedAt: 1, expiresAt: 2 };
    // Act
    const pending = formatEcs(rec, ex, new Map([["1.1.1.1", { entry: negEntry, final: true }]]), OUT);
    const failed = formatEcs(rec, ex, new Map(), OUT, true);
    // Assess
    expect(pending.dnsgeo).toEqual({ status: "partial", answers: [{ ip: "8.8.8.8", reason: "pending" }, { ip: "1.1.1.1", reason: "not_found" }] });
    expect(pending.destination).toEqual({ ip: "8.8.8.8" });
    expect(failed.dnsgeo).toEqual({ status: "error", reason: "lookup_failed", answers: [{ ip: "8.8.8.8", reason: "lookup_failed" }, { ip: "1.1.1.1", reason: "lookup_failed" }] });
  });

  it("skips records without public answers with a reason, leaving non-canonical text out of resolved_ip", () => {
    // Prepare
    const rec = route53(["127.1", "192.168.0.1"]);
    // Act
    const out = formatEcs(rec, extract(rec), new Map(), OUT);
    // Assess
    expect(out.dns).toEqual({ resolved_ip: ["192.168.0.1"] });
    expect(out.destination).toBeUndefined();
    expect(out.dnsgeo).toEqual({
      status: "skipped",
      reason: "no_public_answers",
      answers: [{ ip: "127.1", reason: "not_canonical" }, { ip: "192.168.0.1", reason: "private" }],
    });
    const none = formatEcs(route53([]), { answers: [] }, new Map(), OUT);
    expect(none.dnsgeo).toEqual({ status: "skipped", reason: "no_answers" });
    expect(none.dns).toBeUndefined();
  });

  it.each([
    ["object", { lat: 37.4, lon: -122.1 }],
    ["string", "37.4,-122.1"],
    ["array", [-122.1, 37.4]],
    ["wkt", "POINT (-122.1 37.4)"],
  ] as const)("encodes geo.location as %s", (enc, expected) => {
    // Prepare
    const rec = route53(["8.8.8.8"]);
    // Act
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8"), final: true }]]), { ...OUT, geo_point: enc });
    // Assess
    expect((out.destination as { geo: { location: unknown } }).geo.location).toEqual(expected);
    expect((out.dnsgeo as { answers: Array<{ geo: { location: unknown } }> }).answers[0]!.geo.location).toEqual(expected);
  });

  it("writes no location unless both lat and lon are numbers", () => {
    expect(geoPoint(1, undefined, "object")).toBeUndefined();
    expect(geoPoint(Number.NaN, 2, "wkt")).toBeUndefined();
    expect(geoPoint(0, 0, "string")).toBe("0,0");
  });

  it("uses org for as.organization.name when asOrg is absent", () => {
    const rec = route53(["8.8.8.8"]);
    const out = formatEcs(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8", { asOrg: undefined, asn: undefined }), final: true }]]), OUT);
    expect((out.destination as { as: unknown }).as).toEqual({ organization: { name: "Google Public DNS" } });
  });

  it("adds CloudWatch envelope metadata add-only", () => {
    // Prepare
    const rec = Object.assign(route53(["8.8.8.8"]), { envelope: { logGroup: "/aws/route53/resolver", logStream: "vpc-1_i-2", owner: "123" } });
    rec.record.aws = { region: "eu-west-1" };
    // Act
    const out = formatEcs(rec, extract(rec), new Map(), OUT);
    // Assess
    expect(out.aws).toEqual({ region: "eu-west-1", cloudwatch: { log_group: "/aws/route53/resolver", log_stream: "vpc-1_i-2" } });
    expect(rec.record.aws).toEqual({ region: "eu-west-1" });
  });
});

describe("passthroughEcs", () => {
  it("adds dnsgeo skipped to objects without mutating them; other values unchanged", () => {
    // Prepare
    const obj = { hello: "world" };
    // Act
    const out = passthroughEcs(obj, "not_object");
    // Assess
    expect(out).toEqual({ hello: "world", dnsgeo: { status: "skipped", reason: "not_object" } });
    expect(obj).toEqual({ hello: "world" });
    expect(passthroughEcs("line", "unparsed")).toBe("line");
    expect(passthroughEcs([1, 2], "not_object")).toEqual([1, 2]);
    expect(passthroughEcs(null, "not_object")).toBeNull();
    expect(passthroughEcs({ dnsgeo: { status: "enriched" } }, "not_object")).toEqual({ dnsgeo: { status: "skipped", reason: "not_object" }, dnsgeo_original: { status: "enriched" } });
  });
});
