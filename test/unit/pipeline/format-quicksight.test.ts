import { describe, expect, it } from "vitest";
import type { Config } from "../../../src/config.js";
import type { Entry, IpResult } from "../../../src/lookup/lookup.js";
import { extract } from "../../../src/pipeline/extract.js";
import { QUICKSIGHT_COLUMNS, formatQuicksight, passthroughQuicksight } from "../../../src/pipeline/format-quicksight.js";
import { QUICKSIGHT_ROW_COLUMNS } from "../../../src/pipeline/quicksight-schema.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";
import { googleEntry, route53Parsed } from "../../helpers/google-entry.js";

const OUT: Config["output"] = { format: "quicksight", explode: false, geo_point: "object", destination: true };

/** Google Public DNS's entry for `ip`, in `city`. */
function entry(ip: string, city: string): Entry {
  return googleEntry(ip, { city });
}

/** A parsed Route 53 record for dns.google. with these answers, from a Resolver endpoint. */
function route53(answers: string[]): ParsedRecord {
  return route53Parsed(answers, { instance: "i-0abc", resolver_endpoint: "rslvr-1" });
}

function isFlat(row: Record<string, unknown>): boolean {
  return Object.values(row).every((v) => v === null || typeof v !== "object");
}

describe("formatQuicksight", () => {
  it("gives one flat row with every column, the primary answer's values and answer_ips", () => {
    // Prepare
    const rec = route53(["dns.google.", "10.0.0.1", "8.8.8.8", "8.8.4.4"]);
    const results = new Map<string, IpResult>([
      ["8.8.8.8", { entry: entry("8.8.8.8", "Mountain View"), final: true }],
      ["8.8.4.4", { entry: entry("8.8.4.4", "Other"), final: true }],
    ]);
    const before = structuredClone(rec);
    // Act
    const rows = formatQuicksight(rec, extract(rec), results, OUT);
    // Assess
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(isFlat(row)).toBe(true);
    expect(Object.keys(row)).toEqual([...QUICKSIGHT_ROW_COLUMNS]);
    expect(row).toMatchObject({
      record_kind: "route53",
      query_name: "dns.google.",
      answers: "dns.google.;10.0.0.1;8.8.8.8;8.8.4.4",
      answer_ip: "8.8.8.8",
      answer_ips: "10.0.0.1;8.8.8.8;8.8.4.4",
      geo_lat: 37.4,
      geo_lon: -122.1,
      geo_country_code: "US",
      geo_country: "United States",
      geo_region: "California",
      geo_city: "Mountain View",
      geo_postal_code: "94043",
      geo_timezone: "America/Los_Angeles",
      as_number: 15169,
      as_org: "Google LLC",
      org: "Google Public DNS",
      isp: "Google LLC",
      enrichment_status: "enriched",
      enrichment_reason: null,
    });
    expect(JSON.parse(row.record as string)).toEqual(rec.record);
    expect(rec).toEqual(before);
  });

  it("keeps the schema stable with nulls when nothing is known", () => {
    // Prepare
    const rec = route53(["dns.google.", "192.168.1.1"]);
    // Act
    const [row] = formatQuicksight(rec, extract(rec), new Map(), OUT);
    // Assess
    for (const c of QUICKSIGHT_COLUMNS) expect(row).toHaveProperty(c);
    expect(row).toMatchObject({ answer_ip: null, answer_ips: "192.168.1.1", geo_lat: null, as_number: null, isp: null, enrichment_status: "skipped", enrichment_reason: "no_public_answers" });
  });

  it("has the same column set for enriched, pending and skipped rows", () => {
    // Prepare
    const a = route53(["8.8.8.8"]);
    const b = route53(["10.0.0.1"]);
    // Act
    const enriched = formatQuicksight(a, extract(a), new Map([["8.8.8.8", { entry: entry("8.8.8.8", "X"), final: true }]]), OUT)[0]!;
    const pending = formatQuicksight(a, extract(a), new Map(), OUT)[0]!;
    const skipped = formatQuicksight(b, extract(b), new Map(), OUT)[0]!;
    // Assess
    expect(Object.keys(pending).sort()).toEqual(Object.keys(enriched).sort());
    expect(Object.keys(skipped).sort()).toEqual(Object.keys(enriched).sort());
    expect(pending.enrichment_status).toBe("pending");
    expect(pending.enrichment_reason).toBe("pending");
  });

  it("explodes into one row per public answer IP, each with its own status", () => {
    // Prepare
    const rec = route53(["8.8.8.8", "10.0.0.1", "8.8.4.4"]);
    const results = new Map<string, IpResult>([["8.8.8.8", { entry: entry("8.8.8.8", "Mountain View"), final: true }]]);
    // Act
    const rows = formatQuicksight(rec, extract(rec), results, { ...OUT, explode: true });
    // Assess
    expect(rows.map((r) => [r.answer_ip, r.geo_city, r.enrichment_status, r.enrichment_reason])).toEqual([
      ["8.8.8.8", "Mountain View", "enriched", null],
      ["8.8.4.4", null, "pending", "pending"],
    ]);
    expect(rows.every((r) => r.answer_ips === "8.8.8.8;10.0.0.1;8.8.4.4" && r.query_name === "dns.google.")).toBe(true);
    expect(rows[0]).not.toBe(rows[1]);
  });

  it("explode gives one null row for a record without public answers", () => {
    const rec = route53([]);
    const rows = formatQuicksight(rec, extract(rec), new Map(), { ...OUT, explode: true });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ answer_ip: null, answer_ips: null, enrichment_status: "skipped", enrichment_reason: "no_answers", answers: null });
  });

  it("keeps the record's own fields, even named like dnsgeo's columns, in `record` only, as its text", () => {
    const rec = route53(["8.8.8.8"]);
    rec.record.isp = "from-the-log";
    rec.record.enrichment_status = "enriched";
    rec.record.dnsgeo = { status: "enriched" };
    rec.text = JSON.stringify(rec.record).replace('"version":"1.100000"', '"version":"1.100000","n":9223372036854775808,"f":119.0');
    const [row] = formatQuicksight(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8", "X"), final: true }]]), OUT);
    expect(row!.isp).toBe("Google LLC");
    expect(row!.enrichment_status).toBe("enriched");
    expect(row!.record).toBe(rec.text);
    const [none] = formatQuicksight(rec, extract(rec), new Map(), OUT);
    expect(none!.enrichment_status).toBe("pending");
    expect(none!.isp).toBeNull();
  });

  it("writes a number column as the record spells it", () => {
    const rec: ParsedRecord = { kind: "zeek", record: { ts: 1715677924.1, query: "a.example.", "id.orig_h": "10.0.0.1", rcode_name: "NOERROR" }, queryName: "a.example.", answers: [], text: '{"ts":1715677924.100000,"query":"a.example.","id.orig_h":"10.0.0.1","rcode_name":"NOERROR"}' };
    const [row] = formatQuicksight(rec, extract(rec), new Map(), OUT);
    expect(row).toMatchObject({ record_kind: "zeek", event_time: "1715677924.100000", src_ip: "10.0.0.1", rcode: "NOERROR", query_type: null });
  });

  it("reports error status when the lookup failed", () => {
    const rec = route53(["8.8.8.8"]);
    const [row] = formatQuicksight(rec, extract(rec), new Map(), OUT, true);
    expect(row).toMatchObject({ enrichment_status: "error", enrichment_reason: "lookup_failed", answer_ip: "8.8.8.8" });
  });
});

describe("passthroughQuicksight", () => {
  it("makes a row of every column for any value, skipped, the value in `record`", () => {
    // Prepare
    const obj = { a: { b: 1 } };
    // Act
    const row = passthroughQuicksight(obj, "not_object");
    const scalar = passthroughQuicksight(1e400, "not_object", "1e400");
    // Assess
    expect(Object.keys(row)).toEqual([...QUICKSIGHT_ROW_COLUMNS]);
    expect(Object.keys(scalar)).toEqual([...QUICKSIGHT_ROW_COLUMNS]);
    expect(row).toMatchObject({ record_kind: "unknown", enrichment_status: "skipped", enrichment_reason: "not_object", record: '{"a":{"b":1}}' });
    expect(scalar.record).toBe("1e400");
    for (const c of QUICKSIGHT_COLUMNS) if (c !== "enrichment_status" && c !== "enrichment_reason") expect(row[c], c).toBeNull();
    expect(obj).toEqual({ a: { b: 1 } });
  });
});
