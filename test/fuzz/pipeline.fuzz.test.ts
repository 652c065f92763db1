/**
 * Fuzz targets run in-process through Enricher.enrichBody (DNSGEO_FUZZ_RUNS cases
 * each): random bytes, hostile records of every kind, deep nesting, huge strings,
 * odd Unicode, truncated and bomb-like compressed bodies. No throw but DecodeError
 * on a broken compressed body, one output per input record, no special-purpose
 * or non-canonical IP reaching the lookup.
 */
import { deflateSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { DecodeError } from "../../src/codecs/decode-error.js";
import { Enricher } from "../../src/pipeline/enrich.js";
import { MAX_JSON_DEPTH } from "../../src/pipeline/json-depth.js";
import { zstdStored } from "../integration/transport/harness.js";
import { ipLike, lookupable, oddUnicode, recordOf, RecordingGeo, RUNS, wrongType, breathe } from "./support.js";

const configs = {
  ecs: loadConfig({ overrides: { output: { format: "ecs" }, input: { ip_fields: ["x.ip", "rid"] } } }),
  quicksight: loadConfig({ overrides: { output: { format: "quicksight" }, input: { ip_fields: ["x.ip"] } } }),
};
const format = fc.constantFrom<"ecs" | "quicksight">("ecs", "quicksight");
const slow = { numRuns: Math.max(20, Math.floor(RUNS / 100)) };

/** A row's `rid`: an ECS record's own, or (QuickSight) the one in its `record` column. */
function ridOf(row: { rid?: unknown; record?: unknown }): unknown {
  return typeof row.record === "string" ? (JSON.parse(row.record) as { rid?: unknown }).rid : row.rid;
}

function ridsOf(body: Buffer): unknown[] {
  return body
    .toString("utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => ridOf(JSON.parse(l) as { rid?: unknown; record?: unknown }));
}

describe("fuzz: pipeline in-process", { timeout: 3_600_000 }, () => {
  it("random bytes as NDJSON: never throws, every unparsed line is one of the input's", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), format, async (bytes, f) => {
        await breathe();
        const res = await new Enricher({ geo: new RecordingGeo(), config: configs[f] }).enrichBody(bytes, { contentType: "application/x-ndjson", contentEncoding: "identity" });
        const text = Buffer.from(bytes).toString("utf8");
        for (const it of res.items) if (it.kind === "unparsed") expect(text.includes(it.raw)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("hostile records of every kind: one output each, in order, and only lookupable IPs reach the lookup", async () => {
    const answers = fc.array(fc.oneof({ weight: 4, arbitrary: ipLike }, { weight: 1, arbitrary: wrongType }), { maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(4), answers), { minLength: 1, maxLength: 12 }), format, fc.boolean(), async (recs, f, asArray) => {
        await breathe();
        const geo = new RecordingGeo();
        const records = recs.map(([k, a], i) => recordOf(k, i, a));
        const body = asArray ? JSON.stringify(records) : records.map((r) => JSON.stringify(r)).join("\n") + "\n";
        const res = await new Enricher({ geo, config: configs[f] }).enrichBody(Buffer.from(body), { contentType: asArray ? "application/json" : "application/x-ndjson" });
        expect(res.items.length).toBe(records.length);
        const rids = asArray ? (JSON.parse(res.body.toString("utf8")) as Array<{ rid?: unknown; record?: unknown }>).map(ridOf) : ridsOf(res.body);
        expect(rids).toEqual(records.map((_, i) => i));
        for (const ip of geo.asked) expect(lookupable(ip), `asked for ${JSON.stringify(ip)}`).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("deep nesting (up to 100 000 levels of [ or {): never throws, the record goes out unparsed or enriched, never lost", async () => {
    const depth = fc.oneof(fc.integer({ min: 1, max: 2 * MAX_JSON_DEPTH }), fc.integer({ min: 1, max: 100_000 }));
    await fc.assert(
      fc.asyncProperty(depth, fc.boolean(), fc.constantFrom("bare", "route53", "ecs", "cloudwatch"), format, async (n, arr, wrap, f) => {
        await breathe();
        const deep = arr ? "[".repeat(n) + "]".repeat(n) : '{"a":'.repeat(n) + "1" + "}".repeat(n);
        const line =
          wrap === "bare"
            ? deep
            : wrap === "route53"
              ? `{"query_name":"a.","answers":[{"Rdata":"8.8.8.8","Type":"A"}],"x":${deep}}`
              : wrap === "ecs"
                ? `{"dns":{"answers":[{"data":"8.8.8.8"}]},"x":${deep}}`
                : JSON.stringify({ messageType: "DATA_MESSAGE", logEvents: [{ id: "1", timestamp: 1, message: `{"query_name":"a.","answers":[],"x":${deep}}` }] });
        const res = await new Enricher({ geo: new RecordingGeo(), config: configs[f] }).enrichBody(Buffer.from(line + "\n"), { contentType: "application/x-ndjson" });
        expect(res.items.length).toBe(1);
      }),
      slow,
    );
  });

  it("huge strings and odd Unicode in keys and values: one output per record", async () => {
    const big = fc.integer({ min: 0, max: 300_000 }).map((n) => "a".repeat(n));
    await fc.assert(
      fc.asyncProperty(fc.oneof(big, oddUnicode), oddUnicode, format, async (s, k, f) => {
        await breathe();
        const rec = { query_name: s, answers: [{ Rdata: "8.8.8.8", Type: "A" }, { Rdata: s, Type: "A" }], [k]: s, rid: 0 };
        const res = await new Enricher({ geo: new RecordingGeo(), config: configs[f] }).enrichBody(Buffer.from(JSON.stringify(rec) + "\n"), { contentType: "application/x-ndjson" });
        expect(res.items.length).toBe(1);
      }),
      slow,
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.dictionary(oddUnicode, fc.oneof(oddUnicode, wrongType), { maxKeys: 6 }), { minLength: 1, maxLength: 8 }), format, async (recs, f) => {
        await breathe();
        const geo = new RecordingGeo();
        const body = recs.map((r) => JSON.stringify(r)).join("\n") + "\n";
        const res = await new Enricher({ geo, config: configs[f] }).enrichBody(Buffer.from(body), { contentType: "application/x-ndjson" });
        expect(res.items.length).toBe(recs.length);
        for (const ip of geo.asked) expect(lookupable(ip)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("truncated and corrupted compressed bodies: DecodeError or a full answer, nothing else", async () => {
    const body = Buffer.from(Array.from({ length: 20 }, (_, i) => JSON.stringify(recordOf(i, i, ["8.8.8.8", "10.0.0.1"]))).join("\n") + "\n");
    const packed = { gzip: gzipSync(body), deflate: deflateSync(body), zstd: zstdStored(body) };
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<"gzip" | "deflate" | "zstd">("gzip", "deflate", "zstd"), fc.nat(), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }), async (enc, cut, flips) => {
        await breathe();
        const full = packed[enc];
        const b = Buffer.from(full.subarray(0, cut % (full.length + 1)));
        for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
        try {
          const res = await new Enricher({ geo: new RecordingGeo(), config: configs.ecs }).enrichBody(b, { contentType: "application/x-ndjson", contentEncoding: enc, maxDecodedBytes: 1 << 20 });
          expect(res.items.length).toBeLessThanOrEqual(20 + 5);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("compression bombs stop at maxDecodedBytes with a DecodeError", async () => {
    const zeros = gzipSync(Buffer.alloc(8 << 20));
    const nested = gzipSync(zeros);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1024, max: 4 << 20 }), fc.constantFrom("gzip", "gzip, gzip"), async (max, enc) => {
        await breathe();
        const err = await new Enricher({ geo: new RecordingGeo(), config: configs.ecs })
          .enrichBody(enc === "gzip" ? zeros : nested, { contentEncoding: enc, maxDecodedBytes: max })
          .then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(DecodeError);
      }),
      { numRuns: Math.max(10, Math.floor(RUNS / 1000)) },
    );
  });
});
