/**
 * dnsgeo owns its own fields: whatever a record brings under `dnsgeo` (or QuickSight's
 * enrichment column names) never reads as dnsgeo's answer, and is kept under a
 * documented name. Checked through the Enricher, so both ECS paths run: records without
 * `dns`/`destination`/`dnsgeo`/`aws` take the text path (appended to the line's own text),
 * the others the object path; the record stripped of the hostile keys is the reference.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { loadConfig } from "../../../src/config.js";
import { decode, encodeItems } from "../../../src/pipeline/framing.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { QUICKSIGHT_COLUMNS } from "../../../src/pipeline/format-quicksight.js";
import { QUICKSIGHT_ROW_COLUMNS } from "../../../src/pipeline/quicksight-schema.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";

type Obj = Record<string, unknown>;

const json: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 2 });
const answerIp = fc.constantFrom("8.8.8.8", "1.1.1.1", "10.0.0.1", "2606:4700:4700::1111", "192.0.2.1", "dns.google.");

/** A Route 53 record, maybe carrying its own dnsgeo, dnsgeo_original, destination and QuickSight-named columns. */
const hostile = fc.record(
  {
    rid: fc.string({ maxLength: 6 }),
    answers: fc.array(answerIp, { maxLength: 3 }),
    dnsgeo: fc.oneof(json, fc.record({ status: fc.constantFrom("enriched", "partial"), answers: fc.constant([{ ip: "8.8.8.8", geo: { city_name: "Fake" } }]) })),
    dnsgeo_original: json,
    destination: fc.oneof(
      json,
      fc.record({ ip: fc.constantFrom("8.8.8.8", "1.1.1.1", "192.0.2.53"), geo: fc.constant({ city_name: "Fake" }), as: fc.constant({ number: 1 }), port: fc.constant(53) }, { requiredKeys: [] }),
    ),
    enrichment_status: fc.constantFrom("enriched", "x"),
    geo_city: fc.string({ maxLength: 5 }),
    isp: fc.string({ maxLength: 5 }),
  },
  { requiredKeys: ["rid", "answers"] },
);

function route53Line(r: { rid: string; answers: string[] } & Obj): string {
  const rec: Obj = {};
  for (const [k, v] of Object.entries(r)) rec[k] = k === "answers" ? (v as string[]).map((ip) => ({ Rdata: ip, Type: ip.includes(":") ? "AAAA" : "A", Class: "IN" })) : v;
  rec.query_name = "q.example.";
  return JSON.stringify(rec);
}

const HOSTILE_KEYS = ["dnsgeo", "dnsgeo_original", "destination", "enrichment_status", "geo_city", "isp"];

function stripped(r: Obj): Obj {
  const o: Obj = {};
  for (const [k, v] of Object.entries(r)) if (!HOSTILE_KEYS.includes(k)) o[k] = v;
  return o;
}

const isPlain = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

async function run(format: "ecs" | "quicksight", lines: string[]): Promise<Obj[]> {
  const enricher = new Enricher({ geo: new FixtureGeoService(), config: loadConfig({ env: {} }) });
  const out = await enricher.enrichDecoded(decode(Buffer.from(lines.join("\n") + "\n"), { contentType: "application/x-ndjson" }), { format });
  return encodeItems("ndjson", out.items)
    .toString("utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Obj);
}

/** A value as it reads back from the JSON line `route53Line` wrote (-0 is written "0"). */
const asSent = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

describe("dnsgeo owns its own fields", () => {
  it("ECS: dnsgeo is what dnsgeo computed (text and object paths alike), the record's own is dnsgeo_original, a foreign destination never carries dnsgeo's geo", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostile, { minLength: 1, maxLength: 8 }), async (records) => {
        const outs = await run("ecs", records.map((r) => route53Line(r as never)));
        // The reference: the same records without the hostile keys (text path).
        const refs = await run("ecs", records.map((r) => route53Line(stripped(r) as never)));
        records.forEach((r, i) => {
          const out = outs[i] as Obj;
          const ref = refs[i] as Obj;
          expect(out.dnsgeo).toEqual(ref.dnsgeo);
          if (r.dnsgeo !== undefined && r.dnsgeo_original === undefined) expect(out.dnsgeo_original).toEqual(asSent(r.dnsgeo));
          if (r.dnsgeo_original !== undefined) expect(out.dnsgeo_original).toEqual(asSent(r.dnsgeo_original));
          const d = r.destination;
          const primary = (ref.destination as Obj | undefined)?.ip;
          if (d === undefined) expect(out.destination).toEqual(ref.destination);
          else if (isPlain(d) && d.geo === undefined && d.as === undefined && (d.ip === undefined || d.ip === primary) && primary !== undefined) {
            // Only dnsgeo's own answer is added, to a destination that carried none.
            expect(out.destination).toEqual(Object.assign({}, asSent(d), ref.destination));
          } else expect(out.destination).toEqual(asSent(d));
          for (const k of ["enrichment_status", "geo_city", "isp"]) if (r[k as keyof typeof r] !== undefined) expect(out[k]).toEqual(asSent(r[k as keyof typeof r]));
        });
      }),
      { numRuns: 200 },
    );
  });

  it("QuickSight: every column is dnsgeo's; the record's same-named fields stay in `record`, as they came", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostile, { minLength: 1, maxLength: 8 }), async (records) => {
        const lines = records.map((r) => route53Line(r as never));
        const outs = await run("quicksight", lines);
        const refs = await run("quicksight", records.map((r) => route53Line(stripped(r) as never)));
        records.forEach((r, i) => {
          const out = outs[i] as Obj;
          const ref = refs[i] as Obj;
          for (const c of QUICKSIGHT_COLUMNS) expect(out[c], c).toEqual(ref[c]);
          expect(Object.keys(out)).toEqual([...QUICKSIGHT_ROW_COLUMNS]);
          expect(out.record).toBe(lines[i]);
          for (const k of ["enrichment_status", "geo_city", "isp"] as const) if (r[k] !== undefined) expect((JSON.parse(out.record as string) as Obj)[k]).toEqual(asSent(r[k]));
        });
      }),
      { numRuns: 200 },
    );
  });
});
