/**
 * Lossless output (issue 18): for any JSON record of any input kind — big integers,
 * `1.0`, `1E5`, `-0`, `1e400`, deep objects, unicode, lone surrogates — every original
 * leaf's text in the output equals its text in the input, in NDJSON, array and object
 * framing, in ECS and QuickSight. (gRPC: test/integration/transport/grpc-lossless.test.ts.)
 * Leaves are read by a small reader of the test's own (test/helpers/json-leaves.ts).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";
import { expectLeavesKept, leafTexts } from "../../helpers/json-leaves.js";
import { recordText, valueText } from "../../helpers/lossless-arb.js";
import { atRisk } from "../../../src/pipeline/json-text.js";

const enricher = new Enricher({ geo: new FixtureGeoService(), config: loadConfig({ env: {} }) });

const body = (texts: string[], framing: "ndjson" | "array" | "object"): Buffer =>
  Buffer.from(framing === "ndjson" ? texts.join("\n") + "\n" : framing === "array" ? `[ ${texts.join(" ,\n ")} ]` : texts[0] as string);

describe("lossless output", () => {
  for (const framing of ["ndjson", "array", "object"] as const) {
    it(`ECS, ${framing}: every original leaf comes back with its text`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(recordText, { minLength: 1, maxLength: framing === "object" ? 1 : 6 }), async (recs) => {
          const texts = recs.map((r) => r.text);
          const res = await enricher.enrichBody(body(texts, framing), { contentType: framing === "ndjson" ? "application/x-ndjson" : "application/json" }, { format: "ecs" });
          const out = res.body.toString("utf8");
          let outs: string[];
          if (framing === "ndjson") outs = out.split("\n").slice(0, -1);
          else if (framing === "object") outs = [out];
          else {
            // Each element's text, cut by the test's own reader: leaves under [i].
            const all = leafTexts(out);
            outs = texts.map((_, i) => `{"__el":${i}}`);
            expect(res.framing).toBe("array");
            texts.forEach((t, i) => {
              for (const [key, text] of leafTexts(t)) {
                let path = JSON.parse(key) as Array<string | number>;
                if (path[0] === "dnsgeo" && !t.includes('"dnsgeo_original"')) path = ["dnsgeo_original", ...path.slice(1)];
                else if (path[0] === "dnsgeo") continue;
                if (text === "{}" || text === "[]") continue;
                expect(all.get(JSON.stringify([i, ...path])), key).toBe(text);
              }
            });
            return;
          }
          expect(outs).toHaveLength(texts.length);
          texts.forEach((t, i) => expectLeavesKept(t, outs[i] as string));
        }),
        { numRuns: 150 },
      );
    });
  }

  for (const framing of ["ndjson", "array", "object"] as const) {
    it(`QuickSight, ${framing}: the record column is the record's own text`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(recordText, { minLength: 1, maxLength: framing === "object" ? 1 : 6 }), async (recs) => {
          const texts = recs.map((r) => r.text);
          const res = await enricher.enrichBody(body(texts, framing), { contentType: framing === "ndjson" ? "application/x-ndjson" : "application/json" }, { format: "quicksight" });
          const rows = framing === "ndjson" ? res.body.toString("utf8").split("\n").slice(0, -1).map((l) => JSON.parse(l) as Record<string, unknown>) : ([] as Array<Record<string, unknown>>).concat(JSON.parse(res.body.toString("utf8")) as Record<string, unknown>);
          expect(rows.map((r) => r.record)).toEqual(texts);
        }),
        { numRuns: 100 },
      );
    });
  }

  it("atRisk: a text it passes comes back leaf for leaf through JSON.parse + JSON.stringify; the issue's spellings are caught", () => {
    fc.assert(
      fc.property(fc.oneof(valueText, recordText.map((r) => r.text)), (text) => {
        if (!atRisk(text)) expect(leafTexts(JSON.stringify(JSON.parse(text)))).toEqual(leafTexts(text));
      }),
      { numRuns: 2000 },
    );
    for (const t of ["9223372036854775808", "119.0", "1E5", "7.6967E7", "-0", "1e400", '"\\ud800"', '"\\u00e9"', '"a\\/b"', '{"a":[1,{"b":0.10}]}']) expect(atRisk(t), t).toBe(true);
    for (const t of ['{"a":"10.0.1.23","b":[1,-2,39.03,1.5e-7],"c":"x\\"y\\\\","d":9007199254740991}', '"\\n\\t"', "0", "-1"]) expect(atRisk(t), t).toBe(false);
  });

  it("the values the issue names, one by one, in every framing", async () => {
    const rec = '{"query_name":"a.example.","answers":[{"Rdata":"8.8.8.8","Type":"A"}],"dns":{"Ext":{"options":9223372036854775808}},"f":119.0,"e":7.6967E7,"z":-0,"big":1e400,"s":"\\ud800\\u00e9"}';
    for (const framing of ["ndjson", "array", "object"] as const) {
      const res = await enricher.enrichBody(body([rec], framing), { contentType: framing === "ndjson" ? "application/x-ndjson" : "application/json" });
      const out = res.body.toString("utf8");
      for (const t of ['"options":9223372036854775808', '"f":119.0', '"e":7.6967E7', '"z":-0', '"big":1e400', '"s":"\\ud800\\u00e9"']) expect(out, `${framing} ${t}`).toContain(t);
      expect(out).toContain('"resolved_ip":["8.8.8.8"]');
    }
  });

  it("a line that is neither JSON nor UTF-8 comes back byte for byte", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }).filter((b) => !b.includes(0x0a) && !b.includes(0x0d) && (b[0] ?? 0) > 0x20 && b[0] !== 0x7b && b[0] !== 0x5b && b[0] !== 0x22), { minLength: 1, maxLength: 5 }), async (lines) => {
        const parts = lines.map((l) => Buffer.from(l));
        const withBad = [Buffer.from([0xff, 0xfe, 0x41]), ...parts];
        const input = Buffer.concat(withBad.flatMap((p) => [p, Buffer.from("\n")]));
        const res = await enricher.enrichBody(input, { contentType: "application/x-ndjson" });
        // Lines that are JSON after all (digits, literals) are records; every other line is the same bytes.
        const outLines: Buffer[] = [];
        let start = 0;
        for (let i = 0; i < res.body.length; i++) if (res.body[i] === 0x0a) { outLines.push(res.body.subarray(start, i)); start = i + 1; }
        expect(outLines).toHaveLength(withBad.length);
        withBad.forEach((p, i) => {
          const item = res.items[i];
          if (item?.kind === "unparsed") expect(Buffer.compare(outLines[i] as Buffer, p), String(i)).toBe(0);
        });
        expect(res.items[0]?.kind).toBe("unparsed");
      }),
      { numRuns: 200 },
    );
  });
});
