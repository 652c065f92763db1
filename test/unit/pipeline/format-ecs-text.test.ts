/**
 * The ECS text fast path must give byte for byte what serializing the object
 * path gives, for any record, answers and lookup results — cached or not.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { formatEcs, formatEcsText } from "../../../src/pipeline/format-ecs.js";
import { extract } from "../../../src/pipeline/extract.js";
import type { JsonText, ParsedRecord } from "../../../src/pipeline/types.js";
import { encodeItems } from "../../../src/pipeline/framing.js";
import { PUBLIC, answersArb, geoPointArb, recordArb, resultsArb, viaResolveArb } from "../../helpers/ecs-arbitraries.js";

describe("formatEcsText", () => {
  it("equals JSON.stringify(formatEcs(…)) or declines, for any input", () => {
    fc.assert(
      fc.property(
        recordArb,
        answersArb,
        resultsArb,
        geoPointArb,
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom("", " ", "\t "),
        viaResolveArb,
        (record, answers, results, geoPoint, destination, failed, pad, viaResolve) => {
          // Prepare
          const text = pad + JSON.stringify(record) + pad;
          const rec: ParsedRecord = { kind: "route53", record: JSON.parse(text) as Record<string, unknown>, answers };
          const extracted = extract(rec);
          // Some answers came from the optional resolve step (marked, never in dns.resolved_ip / destination).
          const ex = { answers: extracted.answers.map((a, i) => (viaResolve[i] ? Object.assign({}, a, { via: "resolve" as const }) : a)) };
          const out = loadConfig({ overrides: { output: { geo_point: geoPoint, destination } } }).output;
          // Act: twice, so the second call reads cached fragments
          const first = formatEcsText(rec, ex, results, out, failed, text)?.join("");
          const second = formatEcsText(rec, ex, results, out, failed, text)?.join("");
          // Assess
          const expected = JSON.stringify(formatEcs(rec, ex, results, out, failed));
          const declines = ["dns", "destination", "dnsgeo", "aws"].some((k) => Object.prototype.hasOwnProperty.call(rec.record, k));
          if (declines) {
            expect(first).toBeUndefined();
            return;
          }
          expect(first).toBeDefined();
          expect(JSON.stringify(JSON.parse(first as string))).toBe(expected);
          expect(second).toBe(first);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("encodes to the UTF-8 of its text, cached byte pieces (non-ASCII geo, destination views) included", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...PUBLIC), { minLength: 1, maxLength: 4 }),
        resultsArb,
        fc.boolean(),
        (answers, results, ascii) => {
          // Prepare: a record with a non-ASCII value or not (the head then goes by copy or by encoding)
          const text = JSON.stringify({ query_name: ascii ? "example.com." : "bücher.example." });
          const rec: ParsedRecord = { kind: "route53", record: JSON.parse(text) as Record<string, unknown>, answers };
          const ex = extract(rec);
          const out = loadConfig().output;
          const expected = Buffer.from(JSON.stringify(formatEcs(rec, ex, results, out, false)) + "\n", "utf8");
          // Act: twice, so the second call writes cached pieces
          for (let k = 0; k < 2; k++) {
            const parts = formatEcsText(rec, ex, results, out, false, text) as Array<string | Buffer>;
            const item: JsonText = ascii ? { kind: "jsontext", parts, headSrc: Buffer.from(text), headAt: 0 } : { kind: "jsontext", parts };
            // Assess
            expect(encodeItems("ndjson", [item]).equals(expected)).toBe(true);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("declines records from an envelope (aws.cloudwatch is merged on the object path)", () => {
    const rec: ParsedRecord = { kind: "route53", record: { a: 1 }, answers: [], envelope: { logGroup: "g" } };
    const out = loadConfig().output;
    expect(formatEcsText(rec, extract(rec), new Map(), out, false, '{"a":1}')).toBeUndefined();
  });
});
