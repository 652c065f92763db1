/**
 * The hand-written EnrichResponse encoder must give what protobufjs, reading the
 * proto file, decodes to the same message as the joined texts — for any text
 * (multi-byte UTF-8, empty, records long enough for 2-, 3- and 4-byte length
 * prefixes), any counts, id and looked_up.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type * as grpc from "@grpc/grpc-js";
import { encodeEnrichResponse, EncodedMessage, passEncoded } from "../../../src/transport/grpc-codec.js";
import { loadEnrichmentDefinition } from "../../../src/transport/grpc-server.js";
import { Utf8Writer } from "../../../src/codecs/utf8-writer.js";
import { ProtoWriter } from "../../../src/codecs/protobuf.js";
import type { EncodableItem } from "../../../src/pipeline/types.js";

const def = loadEnrichmentDefinition();
const enrich = (def["dnsgeo.v1.Enrichment"] as grpc.ServiceDefinition).Enrich as grpc.MethodDefinition<unknown, unknown>;
const decode = (b: Buffer): { records?: string[]; counts?: Record<string, number>; id?: string; looked_up?: number } =>
  enrich.responseDeserialize(b) as never;

const textOf = (it: EncodableItem): string =>
  it.kind === "jsontext" ? it.parts.join("") : it.kind === "unparsed" ? it.raw : JSON.stringify(it.value);

// Well-formed Unicode only: a lone surrogate is not valid UTF-8 in any encoder.
const text = fc.string({ unit: fc.constantFrom("a", "{", '"', "\\", "é", "漢", "😀", "\n", "\u0000"), maxLength: 60 });
const item: fc.Arbitrary<EncodableItem> = fc.oneof(
  fc.array(text, { maxLength: 6 }).map((parts): EncodableItem => ({ kind: "jsontext", parts })),
  text.map((raw): EncodableItem => ({ kind: "unparsed", raw })),
  fc.record({ a: text, n: fc.integer() }).map((value): EncodableItem => ({ kind: "json", value })),
);

describe("encodeEnrichResponse", () => {
  it("decodes with protobufjs to the same records, counts, id and looked_up", () => {
    fc.assert(
      fc.property(
        fc.array(item, { maxLength: 30 }),
        fc.dictionary(fc.constantFrom("enriched", "partial", "pending", "skipped", "error", "unparsed"), fc.nat({ max: 2 ** 40 })),
        text,
        fc.nat({ max: 2 ** 32 - 1 }),
        (items, counts, id, lookedUp) => {
          const got = decode(encodeEnrichResponse({ items, counts, id, lookedUp }).bytes);
          expect(got.records ?? []).toEqual(items.map(textOf));
          expect(got.counts ?? {}).toEqual(counts);
          expect(got.id).toBe(id);
          expect(got.looked_up).toBe(lookedUp);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("gives the same bytes protobufjs gives for the joined message, empty id and zero looked_up included", () => {
    const empty = encodeEnrichResponse({ items: [{ kind: "unparsed", raw: "x" }], counts: {}, id: "", lookedUp: 0 }).bytes;
    expect(empty.equals(enrich.responseSerialize({ records: ["x"], counts: {}, id: "", looked_up: 0 }))).toBe(true);
    const items: EncodableItem[] = [
      { kind: "jsontext", parts: ['{"a":1', ',"dnsgeo":{"status":"enriched"}', "}"] },
      { kind: "unparsed", raw: "not json é" },
      { kind: "json", value: { x: [1, 2] } },
    ];
    const counts = { enriched: 1, partial: 0, pending: 0, skipped: 0, error: 0, unparsed: 1 };
    const mine = encodeEnrichResponse({ items, counts, id: "b-7", lookedUp: 3 }).bytes;
    const theirs = enrich.responseSerialize({ records: items.map(textOf), counts, id: "b-7", looked_up: 3 });
    expect(mine.equals(theirs)).toBe(true);
  });

  it("prefixes long records with 2-, 3- and 4-byte lengths", () => {
    for (const n of [127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 0]) {
      const raw = "x".repeat(n - 2 > 0 ? n - 2 : 0) + (n >= 2 ? "é" : "");
      const got = decode(encodeEnrichResponse({ items: [{ kind: "unparsed", raw }, { kind: "unparsed", raw: "z" }], counts: {}, id: "", lookedUp: 0 }).bytes);
      expect(got.records).toEqual([raw, "z"]);
    }
  });

  it("passes an encoded message through and serializes anything else as before", () => {
    const ser = passEncoded(enrich.responseSerialize as (v: unknown) => Buffer);
    const msg = encodeEnrichResponse({ items: [], counts: { enriched: 0 }, id: "", lookedUp: 0 });
    expect(ser(msg)).toEqual(msg.bytes);
    expect(msg).toBeInstanceOf(EncodedMessage);
    expect(decode(ser({ records: ["{}"], counts: {}, id: "q", looked_up: 0 })).records).toEqual(["{}"]);
  });
});

describe("Utf8Writer and ProtoWriter", () => {
  it("keeps a delimited body that ends near the buffer's end (the length goes into reserved bytes)", () => {
    // Regression: writing the length prefix used to grow the buffer and copy only what came before it.
    for (let filler = 40; filler < 80; filler++) {
      const w = new ProtoWriter(64);
      w.str("f".repeat(filler));
      w.byte(0x0a);
      w.delimited(() => w.str("ab"));
      const b = w.finish();
      expect(b.length).toBe(filler + 4);
      expect([...b.subarray(filler)]).toEqual([0x0a, 2, 0x61, 0x62]);
    }
  });

  it("writes any sequence of strings as Buffer.from writes each (short ASCII copied by hand, the rest encoded)", () => {
    const piece = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: "binary", maxLength: 40 }),
      // Lone surrogates, non-ASCII right at the start, the middle and the end of short strings.
      fc.constantFrom("a\uD800", "\uDC00b", "ab\u{1F600}c", "é", "x".repeat(31) + "é", "x".repeat(32), "\u007f\u0080"),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.integer({ min: 1, max: 80 }), (pieces, hint) => {
        const w = new Utf8Writer(hint);
        for (const p of pieces) w.str(p);
        // Each on its own: a surrogate pair split over two pieces is two replacement characters either way.
        expect(w.finish().equals(Buffer.concat(pieces.map((p) => Buffer.from(p, "utf8"))))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("grows past its size hint and writes varints protobuf reads", () => {
    const w = new ProtoWriter(1);
    w.str("é".repeat(100));
    w.varint(300);
    const b = w.finish();
    expect(b.subarray(0, 200).toString("utf8")).toBe("é".repeat(100));
    expect([...b.subarray(200)]).toEqual([0xac, 0x02]);
  });
});

