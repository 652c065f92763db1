import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { exceedsJsonDepth, MAX_JSON_DEPTH, parseJsonBounded } from "../../../src/pipeline/json-depth.js";
import type { GeoService, IpResult } from "../../../src/lookup/lookup.js";

const geo: GeoService = {
  lookup: async (ips: readonly string[]) => new Map<string, IpResult>(ips.map((ip) => [ip, { final: true }])),
  close: async () => undefined,
};

describe("JSON nesting bound", () => {
  it("counts nesting outside strings only", () => {
    // Prepare
    const deepInString = JSON.stringify({ s: "[".repeat(5000) });
    const deep = "[".repeat(MAX_JSON_DEPTH + 1) + "]".repeat(MAX_JSON_DEPTH + 1);
    const atLimit = "[".repeat(MAX_JSON_DEPTH) + "]".repeat(MAX_JSON_DEPTH);
    // Act / Assess
    expect(exceedsJsonDepth(deepInString)).toBe(false);
    expect(exceedsJsonDepth(deep)).toBe(true);
    expect(exceedsJsonDepth(atLimit)).toBe(false);
    expect(() => parseJsonBounded(deep)).toThrow(SyntaxError);
    expect(parseJsonBounded(atLimit)).toBeInstanceOf(Array);
  });

  // Regression: 100 000 levels parsed fine, then JSON.stringify threw RangeError and the whole batch failed (HTTP 500).
  it.each(["ecs", "quicksight"] as const)("a record nested 100 000 deep passes through unparsed (%s), its batch neighbours are enriched", async (format) => {
    // Prepare
    const n = 100_000;
    const deep = `{"dns":{"answers":[{"data":"8.8.8.8"}]},"x":${'{"a":'.repeat(n)}1${"}".repeat(n)}}`;
    const ok = '{"query_name":"a.","answers":[{"Rdata":"8.8.8.8","Type":"A"}]}';
    const e = new Enricher({ geo, config: loadConfig({ overrides: { output: { format } } }) });
    // Act
    const nd = await e.enrichBody(Buffer.from(`${ok}\n${deep}\n${ok}\n`), { contentType: "application/x-ndjson" });
    const arr = await e.enrichBody(Buffer.from("[".repeat(n) + "]".repeat(n)), { contentType: "application/json" });
    // Assess
    expect(nd.items.map((i) => i.kind)).toEqual([format === "ecs" ? "jsontext" : "json", "unparsed", format === "ecs" ? "jsontext" : "json"]);
    expect(nd.counts.unparsed).toBe(1);
    expect(arr.items).toHaveLength(1);
    expect(arr.counts.unparsed).toBe(1);
  });
});
