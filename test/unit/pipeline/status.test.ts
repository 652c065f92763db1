import { describe, expect, it } from "vitest";
import type { Entry, IpResult } from "../../../src/lookup/lookup.js";
import { answerView, recordStatus } from "../../../src/pipeline/status.js";
import type { Extracted } from "../../../src/pipeline/types.js";

const pos = (ip: string, extra: Partial<Entry> = {}): Entry => ({
  ip,
  geo: { ip, countryCode: "US", source: "ip-api", fetchedAt: 1 },
  src: "ip-api",
  fetchedAt: 1,
  expiresAt: 2,
  ...extra,
});
const neg = (ip: string): Entry => ({ ip, neg: true, src: "ip-api", fetchedAt: 1, expiresAt: 2 });

const ex2: Extracted = {
  answers: [
    { ip: "1.1.1.1", class: "public" },
    { ip: "10.0.0.1", class: "skipped", reason: "private" },
    { ip: "8.8.8.8", class: "public" },
  ],
};

describe("recordStatus", () => {
  it("is skipped/no_answers without answers, unknown_record for unknown kinds", () => {
    expect(recordStatus({ answers: [] }, new Map())).toEqual({ status: "skipped", reason: "no_answers" });
    expect(recordStatus({ answers: [] }, new Map(), false, "unknown")).toEqual({ status: "skipped", reason: "unknown_record" });
  });

  it("is skipped/no_public_answers when every answer is special, even when the lookup failed", () => {
    const ex: Extracted = { answers: [{ ip: "10.0.0.1", class: "skipped", reason: "private" }] };
    expect(recordStatus(ex, new Map(), true)).toEqual({ status: "skipped", reason: "no_public_answers" });
  });

  it("is enriched when every public answer is final, negative or absent included", () => {
    // Prepare
    const results = new Map<string, IpResult>([
      ["1.1.1.1", { entry: pos("1.1.1.1"), final: true }],
      ["8.8.8.8", { entry: neg("8.8.8.8"), final: true }],
    ]);
    // Act / Assess
    expect(recordStatus(ex2, results)).toEqual({ status: "enriched" });
    expect(recordStatus(ex2, new Map([["1.1.1.1", { final: true }], ["8.8.8.8", { final: true }]]))).toEqual({ status: "enriched" });
  });

  it("is partial when some public answer has an entry but not all are final", () => {
    const results = new Map<string, IpResult>([
      ["1.1.1.1", { entry: pos("1.1.1.1", { src: "mmdb" }), final: false }],
      ["8.8.8.8", { final: false }],
    ]);
    expect(recordStatus(ex2, results)).toEqual({ status: "partial" });
  });

  it("is pending when no public answer has an entry and some are not final (missing counts as not final)", () => {
    expect(recordStatus(ex2, new Map([["1.1.1.1", { final: true }]]))).toEqual({ status: "pending" });
    expect(recordStatus(ex2, new Map())).toEqual({ status: "pending" });
  });

  it("is error when the lookup failed", () => {
    expect(recordStatus(ex2, new Map(), true)).toEqual({ status: "error", reason: "lookup_failed" });
  });
});

describe("answerView", () => {
  it("shows the positive entry, not_found for final negatives/absent, pending otherwise", () => {
    const a = { ip: "1.1.1.1", class: "public" as const };
    expect(answerView(a, new Map([["1.1.1.1", { entry: pos("1.1.1.1"), final: true }]])).entry?.ip).toBe("1.1.1.1");
    expect(answerView(a, new Map([["1.1.1.1", { entry: neg("1.1.1.1"), final: true }]]))).toEqual({ reason: "not_found" });
    expect(answerView(a, new Map([["1.1.1.1", { final: true }]]))).toEqual({ reason: "not_found" });
    expect(answerView(a, new Map())).toEqual({ reason: "pending" });
    expect(answerView(a, new Map(), true)).toEqual({ reason: "lookup_failed" });
    expect(answerView({ ip: "10.0.0.1", class: "skipped", reason: "private" }, new Map())).toEqual({ reason: "private" });
  });
});
