/**
 * One QuickSight schema (issue 18): 10 000 rows made from a mix of every input kind
 * (every hand-written and real fixture, envelopes, records of no known kind, JSON that
 * is not an object; exploded and not) have exactly one key set, and it is the column
 * list of examples/quicksight/athena-table.sql.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { QUICKSIGHT_ROW_COLUMNS } from "../../../src/pipeline/quicksight-schema.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";

const ROOT = new URL("../../../", import.meta.url);

function ddlColumns(): string[] {
  const sql = readFileSync(new URL("examples/quicksight/athena-table.sql", ROOT), "utf8");
  const body = sql.slice(sql.indexOf("(") + 1, sql.lastIndexOf(")\nROW FORMAT"));
  return [...body.matchAll(/^\s+`?(\w+)`?\s+(?:string|double|bigint|int|boolean|timestamp)\b/gm)].map((m) => m[1] as string);
}

/** Every fixture body, with its content type. */
function bodies(): Array<{ name: string; body: Buffer; contentType: string }> {
  const out: Array<{ name: string; body: Buffer; contentType: string }> = [];
  for (const dir of ["test/fixtures/inputs/", "test/fixtures/real/"]) {
    for (const f of readdirSync(new URL(dir, ROOT)).filter((n) => /\.(json|ndjson)$/.test(n)).sort()) {
      out.push({ name: f, body: readFileSync(new URL(dir + f, ROOT)), contentType: f.endsWith(".ndjson") ? "application/x-ndjson" : "application/json" });
    }
  }
  // Records of no known kind and values that are not objects.
  out.push({ name: "odd", body: Buffer.from('{"a":{"b":[1,2]}}\n42\n"text"\n[1,{"x":null}]\nnull\n{}\n{"isp":"mine","record":"mine","answer_ip":"1.2.3.4"}\n'), contentType: "application/x-ndjson" });
  return out;
}

describe("one QuickSight schema", () => {
  it("10 000 rows of every input kind have exactly one key set: the Athena DDL's columns", async () => {
    // Prepare
    const enricher = new Enricher({ geo: new FixtureGeoService(), config: loadConfig({ overrides: { input: { ip_fields: ["lookup.result.ips", "upstream.addr"] } } }) });
    const inputs = bodies();
    const keySets = new Map<string, number>();
    const kinds = new Set<unknown>();
    let rows = 0;
    // Act
    for (let round = 0; rows < 10_000; round++) {
      for (const { body, contentType } of inputs) {
        const res = await enricher.enrichBody(body, { contentType }, { format: "quicksight", explode: round % 2 === 1 });
        const text = res.body.toString("utf8");
        const values: unknown[] = res.framing === "ndjson" ? text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as unknown) : ([] as unknown[]).concat(JSON.parse(text) as unknown);
        for (const v of values) {
          const key = v !== null && typeof v === "object" && !Array.isArray(v) ? Object.keys(v).join(",") : `not a row: ${JSON.stringify(v)}`;
          keySets.set(key, (keySets.get(key) ?? 0) + 1);
          kinds.add((v as { record_kind?: unknown }).record_kind);
          rows++;
        }
      }
    }
    // Assess
    expect(rows).toBeGreaterThanOrEqual(10_000);
    expect([...keySets.keys()]).toEqual([QUICKSIGHT_ROW_COLUMNS.join(",")]);
    expect(ddlColumns()).toEqual([...QUICKSIGHT_ROW_COLUMNS]);
    for (const k of ["route53", "dns_firewall", "ocsf", "ecs", "zeek", "sysmon", "custom", "unknown"]) expect(kinds.has(k), k).toBe(true);
  });
});
