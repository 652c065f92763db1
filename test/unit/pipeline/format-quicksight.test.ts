import { describe, expect, it } from "vitest";
import type { Config } from "../../../src/config.js";
import type { Entry, IpResult } from "../../../src/lookup/lookup.js";
import { extract } from "../../../src/pipeline/extract.js";
import { QUICKSIGHT_COLUMNS, flattenRecord, formatQuicksight, passthroughQuicksight } from "../../../src/pipeline/format-quicksight.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";

const OUT: Config["output"] = { format: "quicksight", explode: false, geo_point: "object", destination: true };

function entry(ip: string, city: string): Entry {
  return {
    ip,
    geo: { ip, countryCode: "US", country: "United States", regionCode: "CA", regionName: "California", city, postalCode: "94043", lat: 37.4, lon: -122.1, timezone: "America/Los_Angeles", asn: 15169, asOrg: "Google LLC", org: "Google Public DNS", isp: "Google LLC", source: "ip-api", fetchedAt: 1 },
    src: "ip-api",
    fetchedAt: 1,
    expiresAt: 2,
  };
}

function route53(answers: string[]): ParsedRecord {
  return {
    kind: "route53",
    record: {
      version: "1.100000",
      query_name: "dns.google.",
      srcids: { instance: "i-0abc", resolver_endpoint: "rslvr-1" },
      answers: answers.map((a) => ({ Rdata: a, Type: "A", Class: "IN" })),
    },
    queryName: "dns.google.",
    answers,
  };
}

function isFlat(row: Record<string, unknown>): boolean {
  return Object.values(row).every((v) => v === null || typeof v !== "object");
}

describe("flattenRecord", () => {
  it("joins nested keys with _, joins answers Rdata and scalar arrays with ;, JSON-encodes arrays of objects", () => {
    // Prepare
    const record = {
      a: { b: { c: 1 } },
      answers: [{ Rdata: "x.example." }, { Rdata: "8.8.8.8" }],
      tags: ["a", 2, true, null],
      objs: [{ k: 1 }],
      empty: [],
      nothing: null,
      blank: {},
      dns: { answers: [{ data: "1.1.1.1" }, { data: "9.9.9.9" }] },
    };
    // Act
    const flat = flattenRecord(record);
    // Assess
    expect(flat).toEqual({
      a_b_c: 1,
      answers: "x.example.;8.8.8.8",
      tags: "a;2;true;",
      objs: '[{"k":1}]',
      empty: null,
      nothing: null,
      dns_answers: "1.1.1.1;9.9.9.9",
    });
  });

  it("keeps own __proto__ and Object.prototype-named keys as plain columns", () => {
    // Prepare
    const record = JSON.parse('{"__proto__":"p","toString":"t","nested":{"__proto__":{"x":1},"constructor":2}}') as Record<string, unknown>;
    // Act
    const flat = flattenRecord(record);
    // Assess
    expect(Object.getPrototypeOf(flat)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(flat))).toEqual(JSON.parse('{"__proto__":"p","toString":"t","nested___proto___x":1,"nested_constructor":2}'));
  });

  it("turns dots inside keys into _ so column names suit Athena (Zeek id.orig_h = nested id.orig_h)", () => {
    expect(flattenRecord({ "id.orig_h": "10.0.0.1", "id.resp_p": 53, a: { "b.c": 1 } })).toEqual({ id_orig_h: "10.0.0.1", id_resp_p: 53, a_b_c: 1 });
    expect(flattenRecord({ id: { orig_h: "10.0.0.1" } })).toEqual({ id_orig_h: "10.0.0.1" });
    expect(flattenRecord({ "id.orig_h": "a", id: { orig_h: "b" } })).toEqual({ id_orig_h: "a" });
    expect(flattenRecord({ id: { orig_h: "b" }, "id.orig_h": "a" })).toEqual({ id_orig_h: "b" });
  });

  it("lets the first key win on a flatten collision", () => {
    expect(flattenRecord({ a: { b: 1 }, a_b: 2 })).toEqual({ a_b: 1 });
    expect(flattenRecord({ a_b: 2, a: { b: 1 } })).toEqual({ a_b: 2 });
  });
});

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
    expect(row).toMatchObject({
      version: "1.100000",
      query_name: "dns.google.",
      srcids_instance: "i-0abc",
      srcids_resolver_endpoint: "rslvr-1",
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
    for (const c of QUICKSIGHT_COLUMNS) expect(row).toHaveProperty(c);
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

  it("moves an original column that collides with an enrichment column to <name>_original, and the record's dnsgeo to dnsgeo_original_*", () => {
    const rec = route53(["8.8.8.8"]);
    rec.record.isp = "from-the-log";
    rec.record.enrichment_status = "enriched";
    rec.record.geo_city_original = "taken";
    rec.record.geo_city = "Fake";
    rec.record.dnsgeo = { status: "enriched" };
    const [row] = formatQuicksight(rec, extract(rec), new Map([["8.8.8.8", { entry: entry("8.8.8.8", "X"), final: true }]]), OUT);
    expect(row!.isp).not.toBe("from-the-log");
    expect(row!.isp_original).toBe("from-the-log");
    expect(row!.enrichment_status_original).toBe("enriched");
    expect(row!.enrichment_status).toBe("enriched");
    expect(row!.geo_city).toBe("X");
    expect(row!.geo_city_original).toBe("taken"); // the record's own column of that name is kept
    expect(row!.dnsgeo_original_status).toBe("enriched");
    expect(row!.dnsgeo_status).toBeUndefined();
    const [none] = formatQuicksight(rec, extract(rec), new Map(), OUT);
    expect(none!.enrichment_status).toBe("pending");
    expect(none!.isp).toBeNull();
  });

  it("keeps an own __proto__ column through row assembly", () => {
    const rec = route53(["8.8.8.8"]);
    rec.record = JSON.parse('{"__proto__":{"answer_ip":"evil"},"query_name":"q"}') as Record<string, unknown>;
    const [row] = formatQuicksight(rec, extract(rec), new Map(), OUT);
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(row))).toMatchObject(JSON.parse('{"__proto___answer_ip":"evil","query_name":"q","answer_ip":"8.8.8.8"}'));
  });

  it("reports error status when the lookup failed", () => {
    const rec = route53(["8.8.8.8"]);
    const [row] = formatQuicksight(rec, extract(rec), new Map(), OUT, true);
    expect(row).toMatchObject({ enrichment_status: "error", enrichment_reason: "lookup_failed", answer_ip: "8.8.8.8" });
  });
});

describe("passthroughQuicksight", () => {
  it("flattens objects with skipped status and null columns; other values unchanged", () => {
    // Prepare
    const obj = { a: { b: 1 } };
    // Act
    const row = passthroughQuicksight(obj, "not_object") as Record<string, unknown>;
    // Assess
    expect(row.a_b).toBe(1);
    expect(row.enrichment_status).toBe("skipped");
    expect(row.enrichment_reason).toBe("not_object");
    for (const c of QUICKSIGHT_COLUMNS) expect(row).toHaveProperty(c);
    expect(obj).toEqual({ a: { b: 1 } });
    expect(passthroughQuicksight("raw line", "unparsed")).toBe("raw line");
  });
});
