import { describe, expect, it } from "vitest";
import { extract, publicIps } from "../../../src/pipeline/extract.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";

function rec(answers: string[]): ParsedRecord {
  return { kind: "route53", record: { query_name: "example.com" }, queryName: "example.com", answers };
}

describe("extract", () => {
  it("keeps only IPs of a CNAME chain, in answer order", () => {
    // Prepare
    const r = rec(["www.example.com.", "edge.example.net.", "8.8.4.4", "2606:4700:4700::1111", "10.0.0.1"]);
    // Act
    const ex = extract(r);
    // Assess
    expect(ex.answers).toEqual([
      { ip: "8.8.4.4", class: "public" },
      { ip: "2606:4700:4700::1111", class: "public" },
      { ip: "10.0.0.1", class: "skipped", reason: "private" },
    ]);
  });

  it("dedupes by canonical text (8.8.8.8 twice and ::ffff:8.8.8.8 give one answer)", () => {
    // Prepare
    const r = rec(["8.8.8.8", "8.8.8.8", "::ffff:8.8.8.8", "2001:4860:4860:0:0:0:0:8888", "2001:4860:4860::8888"]);
    // Act
    const ex = extract(r);
    // Assess
    expect(ex.answers.map((a) => a.ip)).toEqual(["8.8.8.8", "2001:4860:4860::8888"]);
  });

  it("dedupes past the small-list fast path too", () => {
    // Prepare
    const many = Array.from({ length: 20 }, (_, i) => `8.8.${i % 12}.1`);
    // Act
    const ex = extract(rec(many));
    // Assess
    expect(ex.answers.map((a) => a.ip)).toEqual(Array.from({ length: 12 }, (_, i) => `8.8.${i}.1`));
  });

  it("keeps skipped odd forms with their raw text and never throws on junk", () => {
    // Prepare
    const r = rec(["127.1", "fe80::1%eth0", "", "not an ip", 42 as unknown as string]);
    // Act
    const ex = extract(r);
    // Assess
    expect(ex.answers).toEqual([
      { ip: "127.1", class: "skipped", reason: "not_canonical" },
      { ip: "fe80::1%eth0", class: "skipped", reason: "zone_id" },
    ]);
  });

  it("gives no answers for a record without answers", () => {
    expect(extract(rec([])).answers).toEqual([]);
    expect(extract({ kind: "unknown", record: {}, answers: undefined as unknown as string[] }).answers).toEqual([]);
  });
});

describe("publicIps", () => {
  it("lists the unique public IPs of a batch in first-seen order", () => {
    // Prepare
    const exs = [extract(rec(["1.1.1.1", "10.0.0.1", "8.8.8.8"])), extract(rec(["8.8.8.8", "::ffff:1.1.1.1", "9.9.9.9", "192.0.2.1"]))];
    // Act
    const ips = publicIps(exs);
    // Assess
    expect(ips).toEqual(["1.1.1.1", "8.8.8.8", "9.9.9.9"]);
  });
});
