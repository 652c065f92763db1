/**
 * The forward path's msgpack formatter: the key/value pairs `formatEcsPacked` writes,
 * appended to a record's map, must decode to what `formatEcs` gives, for any record,
 * answers, lookup results and policy tags — cached entry bytes or not.
 */
import fc from "fast-check";
import { Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { MsgpackWriter, packValue } from "../../../src/codecs/msgpack-writer.js";
import { loadConfig } from "../../../src/config.js";
import { formatEcs, formatEcsPacked } from "../../../src/pipeline/format-ecs.js";
import { extract } from "../../../src/pipeline/extract.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";
import { answersArb, geoPointArb, recordArb, resultsArb, viaResolveArb } from "../../helpers/ecs-arbitraries.js";

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** The record's own packed map with `count` pairs of `added` appended, decoded. */
function appended(record: Record<string, unknown>, count: number, added: Buffer): unknown {
  const own = packValue(record);
  const w = new MsgpackWriter(64);
  w.mapHeader(Object.keys(record).length + count);
  const body = own[0] === 0xde ? 3 : own[0] === 0xdf ? 5 : 1;
  w.copy(own, body, own.length);
  w.bytes(added);
  return unpackr.unpack(w.finish());
}

const policyArb = fc.option(
  fc.record({
    tags: fc.array(fc.constantFrom("malware", "tür", "c2"), { minLength: 1, maxLength: 2 }),
    hits: fc.array(fc.record({ rule: fc.constant("r1"), tag: fc.constant("malware"), ip: fc.constantFrom("8.8.8.8", "1.1.1.1") }), { maxLength: 2 }),
    answerTags: fc.array(fc.option(fc.constant(["malware"]), { nil: undefined }), { minLength: 5, maxLength: 5 }),
  }),
  { nil: undefined },
);

describe("formatEcsPacked", () => {
  it("appended to the record's map, decodes to formatEcs(…), or declines; cached bytes give the same", () => {
    fc.assert(
      fc.property(
        recordArb,
        answersArb,
        resultsArb,
        geoPointArb,
        fc.boolean(),
        fc.boolean(),
        viaResolveArb,
        policyArb,
        (record, answers, results, geoPoint, destination, failed, viaResolve, policy) => {
          // Prepare: a record as msgpack gives it (no __proto__ surprises: a plain copy of the JSON)
          const rec: ParsedRecord = { kind: "route53", record: JSON.parse(JSON.stringify(record)) as Record<string, unknown>, answers };
          const extracted = extract(rec);
          const ex = { answers: extracted.answers.map((a, i) => (viaResolve[i] ? Object.assign({}, a, { via: "resolve" as const }) : a)) };
          const out = loadConfig({ overrides: { output: { geo_point: geoPoint, destination } } }).output;
          // Act: twice, so the second call copies cached entry bytes
          const w1 = new MsgpackWriter(16);
          const w2 = new MsgpackWriter(16);
          const first = formatEcsPacked(w1, rec, ex, results, out, failed, undefined, policy);
          const second = formatEcsPacked(w2, rec, ex, results, out, failed, undefined, policy);
          // Assess
          const owned = ["dns", "destination", "dnsgeo", "aws"].some((k) => Object.prototype.hasOwnProperty.call(rec.record, k));
          if (owned || (policy !== undefined && rec.record.tags !== undefined)) {
            expect(first).toBeUndefined();
            expect(w1.off).toBe(0);
            return;
          }
          expect(first).toBeDefined();
          const expected = unpackr.unpack(packValue(formatEcs(rec, ex, results, out, failed, undefined, policy)));
          expect(appended(rec.record, first as number, w1.finish())).toEqual(expected);
          expect(second).toBe(first);
          expect(w2.finish().equals(w1.finish())).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("declines records from an envelope and OCSF records", () => {
    const out = loadConfig().output;
    const w = new MsgpackWriter(16);
    const env: ParsedRecord = { kind: "route53", record: { a: 1 }, answers: [], envelope: { logGroup: "g" } };
    const ocsf: ParsedRecord = { kind: "ocsf", record: { a: 1 }, answers: [] };
    expect(formatEcsPacked(w, env, extract(env), new Map(), out, false)).toBeUndefined();
    expect(formatEcsPacked(w, ocsf, extract(ocsf), new Map(), out, false)).toBeUndefined();
    expect(w.off).toBe(0);
  });

  it("writes strings of every msgpack str size, and map and array headers past 15", () => {
    const w = new MsgpackWriter(4);
    const values = ["", "a".repeat(31), "ü".repeat(20), "b".repeat(200), "c".repeat(70_000)];
    w.arrayHeader(values.length + 1);
    for (const v of values) w.string(v);
    const m: Record<string, number> = {};
    for (let i = 0; i < 20; i++) m[`k${i}`] = i;
    w.mapHeader(20);
    for (const [k, v] of Object.entries(m)) {
      w.string(k);
      w.value(v);
    }
    expect(unpackr.unpack(w.finish())).toEqual([...values, m]);
  });
});
