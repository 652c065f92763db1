import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { createRequire } from "node:module";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { compress, decompressAsync } from "../../../src/codecs/compression.js";
import { decode as decodeWithText, encode, encodeItems } from "../../../src/pipeline/framing.js";
import { DecodeError } from "../../../src/codecs/decode-error.js";
import type { Decoded } from "../../../src/pipeline/types.js";

/** decode without the `text` that NDJSON object items carry (checked on its own below). */
function decode(...args: Parameters<typeof decodeWithText>): Decoded {
  const d = decodeWithText(...args);
  return { framing: d.framing, items: d.items.map((i) => (i.kind === "json" ? { kind: "json", value: i.value } : i)) };
}
import type { DecodedItem } from "../../../src/pipeline/types.js";

const snappy = createRequire(import.meta.url)("snappyjs") as { compress(b: Uint8Array): Uint8Array };
const inputs = new URL("../../fixtures/inputs/", import.meta.url);
const fixture = (name: string): Buffer => readFileSync(fileURLToPath(new URL(name, inputs)));

/** CRC32C is not checked by decode, so frames carry a zero checksum. */
function snappyFramed(data: Buffer, chunkSize = 65536): Buffer {
  const parts: Buffer[] = [Buffer.from([0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59])];
  for (let off = 0, n = 0; off < data.length; off += chunkSize, n++) {
    const slice = data.subarray(off, off + chunkSize);
    const asCompressed = n % 2 === 0;
    const payload = asCompressed ? Buffer.from(snappy.compress(slice)) : slice;
    const len = payload.length + 4;
    parts.push(Buffer.from([asCompressed ? 0x00 : 0x01, len & 0xff, (len >> 8) & 0xff, len >> 16, 0, 0, 0, 0]), payload);
  }
  return Buffer.concat(parts);
}

const values = (d: Decoded): unknown[] => d.items.map((i) => (i.kind === "json" ? i.value : i.raw));

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  expect((caught as DecodeError).code).toBe(code);
}

const records = [{ a: 1, ip: "8.8.8.8" }, { b: "x" }, { c: [1, 2] }];
const bodies: Record<"ndjson" | "array" | "object", { text: string; items: unknown[]; contentType?: string }> = {
  ndjson: { text: records.map((r) => JSON.stringify(r)).join("\n") + "\n", items: records, contentType: "application/x-ndjson" },
  array: { text: JSON.stringify(records), items: records, contentType: "application/json" },
  object: { text: JSON.stringify(records[0]), items: [records[0]], contentType: "application/json" },
};

type Coder = { encoding: string; apply: (b: Buffer) => Buffer };
const zstdSample = fixture("route53.ndjson.zst");
const coders: Coder[] = [
  { encoding: "identity", apply: (b) => b },
  { encoding: "gzip", apply: (b) => zlib.gzipSync(b) },
  { encoding: "x-gzip", apply: (b) => zlib.gzipSync(b) },
  { encoding: "deflate", apply: (b) => zlib.deflateSync(b) },
  { encoding: "deflate", apply: (b) => zlib.deflateRawSync(b) },
  { encoding: "snappy", apply: (b) => Buffer.from(snappy.compress(b)) },
  { encoding: "snappy", apply: (b) => snappyFramed(b) },
];

describe("decode framing × compression", () => {
  for (const [framing, body] of Object.entries(bodies)) {
    coders.forEach((coder, i) => {
      it(`${framing} with ${coder.encoding} #${i}`, () => {
        // Prepare
        const wire = coder.apply(Buffer.from(body.text));
        // Act
        const out = decode(wire, { contentEncoding: coder.encoding, contentType: body.contentType });
        // Assess
        expect(out.framing).toBe(framing);
        expect(out.items).toEqual(body.items.map((value) => ({ kind: "json", value })));
      });
    });
  }

  it("zstd (fixture made with the zstd CLI) declared and sniffed", () => {
    const plain = fixture("route53.ndjson").toString("utf8");
    const expected = plain.trim().split("\n").map((l) => ({ kind: "json", value: JSON.parse(l) }));
    const declared = decode(zstdSample, { contentEncoding: "zstd", contentType: "application/x-ndjson" });
    const sniffed = decode(zstdSample);
    expect(declared).toEqual({ framing: "ndjson", items: expected });
    expect(sniffed).toEqual({ framing: "ndjson", items: expected });
    expect(expected).toHaveLength(6);
  });

  it("sniffs gzip, zlib and snappy framed when no Content-Encoding is given", () => {
    const text = Buffer.from(bodies.array.text);
    for (const wire of [zlib.gzipSync(text), zlib.deflateSync(text), snappyFramed(text)]) {
      expect(decode(wire)).toEqual({ framing: "array", items: records.map((value) => ({ kind: "json", value })) });
    }
  });

  it("undoes several codings in reverse order", () => {
    const wire = zlib.gzipSync(zlib.deflateSync(Buffer.from(bodies.ndjson.text)));
    expect(decode(wire, { contentEncoding: "deflate, gzip" }).items).toHaveLength(3);
  });

  it("snappy framed with many chunks and padding", () => {
    const big = Buffer.from(Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, pad: "x".repeat(40) })).join("\n") + "\n");
    const framed = Buffer.concat([snappyFramed(big, 30000), Buffer.from([0xfe, 2, 0, 0, 0, 0])]);
    const out = decode(framed, { contentEncoding: "snappy" });
    expect(out.items).toHaveLength(5000);
    expect(out.items[4999]).toEqual({ kind: "json", value: { i: 4999, pad: "x".repeat(40) } });
  });
});

describe("decode framing rules", () => {
  it("single line ending in a newline is ndjson, without one it is an object", () => {
    expect(decode(Buffer.from('{"a":1}\n')).framing).toBe("ndjson");
    expect(decode(Buffer.from('{"a":1}')).framing).toBe("object");
    expect(decode(Buffer.from('{\n  "a": 1\n}\n')).framing).toBe("object");
  });

  it("an ndjson content type forces ndjson even for one object", () => {
    expect(decode(Buffer.from('{"a":1}'), { contentType: "application/x-ndjson; charset=utf-8" }).framing).toBe("ndjson");
  });

  it("newline-separated objects sent as application/json decode as ndjson", () => {
    const out = decode(Buffer.from('{"a":1}\n{"b":2}'), { contentType: "application/json" });
    expect(out).toEqual({ framing: "ndjson", items: [{ kind: "json", value: { a: 1 } }, { kind: "json", value: { b: 2 } }] });
  });

  it("bad lines pass through, others still parse; CRLF and blank lines handled", () => {
    const out = decode(Buffer.from('{"a":1}\r\nnot json\r\n\r\n   \n[1,2\n{"b":2}\r\n'));
    expect(out).toEqual({
      framing: "ndjson",
      items: [
        { kind: "json", value: { a: 1 } },
        { kind: "unparsed", raw: "not json" },
        { kind: "unparsed", raw: "[1,2" },
        { kind: "json", value: { b: 2 } },
      ],
    });
  });

  it("a broken array falls back to line by line", () => {
    const out = decode(Buffer.from('[{"a":1},\n{"b":2}'));
    expect(out.framing).toBe("ndjson");
    expect(out.items.map((i) => i.kind)).toEqual(["unparsed", "json"]);
  });

  it("strips a UTF-8 BOM", () => {
    const out = decode(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('[{"a":1}]')]));
    expect(out).toEqual({ framing: "array", items: [{ kind: "json", value: { a: 1 } }] });
  });

  it("empty and whitespace bodies give ndjson with no items", () => {
    expect(decode(Buffer.alloc(0))).toEqual({ framing: "ndjson", items: [] });
    expect(decode(Buffer.from(" \n\r\n"))).toEqual({ framing: "ndjson", items: [] });
  });

  it("a body that is one scalar is an ndjson item", () => {
    expect(decode(Buffer.from("42"))).toEqual({ framing: "ndjson", items: [{ kind: "json", value: 42 }] });
  });

  it("json-seq record separators are stripped", () => {
    const out = decode(Buffer.from('\u001e{"a":1}\n\u001e{"b":2}\n'), { contentType: "application/json-seq" });
    expect(out.items).toEqual([{ kind: "json", value: { a: 1 } }, { kind: "json", value: { b: 2 } }]);
  });

  it("text that starts like zlib but is not stays text", () => {
    const out = decode(Buffer.from("x^ not compressed\n"));
    expect(out.items).toEqual([{ kind: "unparsed", raw: "x^ not compressed" }]);
  });

  it("never throws on arbitrary uncompressed bytes", () => {
    const samples = [
      Buffer.from([0xc3, 0x28, 0x0a, 0xff, 0xfe]),
      Buffer.from("[".repeat(100000)),
      Buffer.from("{".repeat(50000) + "\n" + "]".repeat(10)),
      Buffer.from('"\\ud800"\n\u0000\n'),
      Buffer.from([0x78, 0x9c, 0x00, 0x01]),
    ];
    for (const s of samples) expect(() => decode(s)).not.toThrow();
  });
});

describe("decode errors", () => {
  it("unknown Content-Encoding", () => {
    expectCode(() => decode(Buffer.from("{}"), { contentEncoding: "br" }), "DNSGEO_UNSUPPORTED_ENCODING");
  });

  it("truncated or corrupt gzip", () => {
    const gz = zlib.gzipSync(Buffer.from(bodies.ndjson.text.repeat(50)));
    expectCode(() => decode(gz.subarray(0, gz.length - 20), { contentEncoding: "gzip" }), "DNSGEO_BAD_COMPRESSION");
    expectCode(() => decode(gz.subarray(0, gz.length - 20)), "DNSGEO_BAD_COMPRESSION");
    expectCode(() => decode(Buffer.from("plain text"), { contentEncoding: "gzip" }), "DNSGEO_BAD_COMPRESSION");
  });

  it("truncated zstd and snappy", () => {
    expectCode(() => decode(zstdSample.subarray(0, zstdSample.length - 10)), "DNSGEO_BAD_COMPRESSION");
    const framed = snappyFramed(Buffer.from(bodies.ndjson.text));
    expectCode(() => decode(framed.subarray(0, framed.length - 3)), "DNSGEO_BAD_COMPRESSION");
    expectCode(() => decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]), { contentEncoding: "snappy" }), "DNSGEO_BAD_COMPRESSION");
  });

  it("a gzip bomb is refused at the limit", async () => {
    // Prepare: 64 MiB of zeros streamed through gzip (~64 KiB on the wire).
    const gz = zlib.createGzip({ level: 9 });
    const chunks: Buffer[] = [];
    gz.on("data", (c: Buffer) => chunks.push(c));
    const done = new Promise((resolve) => gz.on("end", resolve));
    const zeros = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 64; i++) gz.write(zeros);
    gz.end();
    await done;
    const bomb = Buffer.concat(chunks);
    // Act + Assess
    expect(bomb.length).toBeLessThan(1024 * 1024);
    expectCode(() => decode(bomb, { contentEncoding: "gzip", maxDecodedBytes: 1024 * 1024 }), "DNSGEO_BODY_TOO_LARGE");
    expectCode(() => decode(bomb, { maxDecodedBytes: 1024 * 1024 }), "DNSGEO_BODY_TOO_LARGE");
    expectCode(() => decode(zlib.deflateSync(zeros), { contentEncoding: "deflate", maxDecodedBytes: 1000 }), "DNSGEO_BODY_TOO_LARGE");
  });

  it("zstd bombs are refused (streamed, and by declared size)", () => {
    expectCode(() => decode(fixture("bomb-200mb-zeros.zst"), { maxDecodedBytes: 1024 * 1024 }), "DNSGEO_BODY_TOO_LARGE");
    expectCode(
      () => decode(fixture("bomb-200mb-zeros-sized.zst"), { contentEncoding: "zstd", maxDecodedBytes: 1024 * 1024 }),
      "DNSGEO_BODY_TOO_LARGE",
    );
  });

  it("malformed snappy that hangs snappyjs's decoder is refused at once", () => {
    // A 4-byte literal length with its top bit set: snappyjs 0.7 turns it negative, moves
    // backwards and never returns (this body held the event loop for good).
    expectCode(() => decode(Buffer.from([10, 0xfc, 0xf0, 0xff, 0xff, 0xff, 0x41, 0x41]), { contentEncoding: "snappy" }), "DNSGEO_BAD_COMPRESSION");
    // Copies reaching before the start of the output, past the declared length, or a block
    // shorter than declared.
    expectCode(() => decode(Buffer.from([4, 0x00, 0x61, 0x05, 0x02]), { contentEncoding: "snappy" }), "DNSGEO_BAD_COMPRESSION");
    expectCode(() => decode(Buffer.from([2, 0x04, 0x61, 0x62, 0x01, 0x01]), { contentEncoding: "snappy" }), "DNSGEO_BAD_COMPRESSION");
    expectCode(() => decode(Buffer.from([9, 0x04, 0x61, 0x62]), { contentEncoding: "snappy" }), "DNSGEO_BAD_COMPRESSION");
  });

  it("snappy: every element form decodes (long literals with 1–4 length bytes, 1-, 2- and 4-byte offsets, overlapping copies)", () => {
    const text = '{"a":"xyzxyzxyzxyz"}\n';
    const lit = Buffer.from(text);
    const block = (elements: number[][]): Buffer => Buffer.concat([Buffer.from([text.length]), ...elements.map((e) => Buffer.from(e))]);
    // Literal of the whole text with its length-1 in 1, 2, 3 and 4 bytes after tag 60..63.
    for (let k = 1; k <= 4; k++) {
      const lenBytes = [text.length - 1, 0, 0, 0].slice(0, k);
      const b = Buffer.concat([block([[(59 + k) << 2, ...lenBytes]]), lit]);
      expect(values(decode(b, { contentEncoding: "snappy" }))).toEqual([{ a: "xyzxyzxyzxyz" }]);
    }
    // '{"a":"xyz' as a literal, then 9 bytes copied from offset 3 (overlapping), then '"}\n'.
    const head = Buffer.from('{"a":"xyz');
    const tail = Buffer.from('"}\n');
    const copies: number[][] = [
      [((9 - 4) << 2) | 1, 3], // 1-byte offset
      [((9 - 1) << 2) | 2, 3, 0], // 2-byte offset
      [((9 - 1) << 2) | 3, 3, 0, 0, 0], // 4-byte offset
    ];
    for (const copy of copies) {
      const b = Buffer.concat([Buffer.from([text.length, (head.length - 1) << 2]), head, Buffer.from(copy), Buffer.from([(tail.length - 1) << 2]), tail]);
      expect(values(decode(b, { contentEncoding: "snappy" }))).toEqual([{ a: "xyzxyzxyzxyz" }]);
    }
  });

  it("snappy: round trips snappyjs's compressor; random bytes end in an answer or a DecodeError, never a hang", () => {
    fc.assert(
      fc.property(fc.array(fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string(), fc.constantFrom("8.8.8.8", "example.com.".repeat(20)))), { minLength: 1, maxLength: 60 }), (recs) => {
        // Repetitive text, so the compressor emits copies at many offsets as well as literals.
        const text = recs.map((r) => JSON.stringify(r)).join("\n") + "\n";
        const out = decode(Buffer.from(snappy.compress(Buffer.from(text))), { contentEncoding: "snappy" });
        expect(values(out)).toEqual(recs.map((r) => JSON.parse(JSON.stringify(r)) as unknown));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (data) => {
        try {
          decode(Buffer.from(data), { contentEncoding: "snappy" });
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 20000 },
    );
  });

  it("snappy past the limit is refused from the declared length", () => {
    const zeros = Buffer.alloc(200000);
    expectCode(() => decode(Buffer.from(snappy.compress(zeros)), { contentEncoding: "snappy", maxDecodedBytes: 1000 }), "DNSGEO_BODY_TOO_LARGE");
    expectCode(() => decode(snappyFramed(zeros), { maxDecodedBytes: 100000 }), "DNSGEO_BODY_TOO_LARGE");
  });

  it("an uncompressed body past the limit is refused; one at the limit is not", () => {
    const body = Buffer.from(bodies.ndjson.text);
    expectCode(() => decode(body, { maxDecodedBytes: body.length - 1 }), "DNSGEO_BODY_TOO_LARGE");
    expect(decode(zlib.gzipSync(body), { maxDecodedBytes: body.length }).items).toHaveLength(3);
  });
});

describe("encodeItems / encode", () => {
  const items: DecodedItem[] = [
    { kind: "json", value: { a: 1 } },
    { kind: "unparsed", raw: "not json" },
    { kind: "json", value: [2] },
  ];

  it("ndjson: one line per item, each ending in a newline, raw lines unchanged", () => {
    expect(encodeItems("ndjson", items).toString()).toBe('{"a":1}\nnot json\n[2]\n');
    expect(encodeItems("ndjson", []).length).toBe(0);
  });

  it("array: raw lines become JSON strings", () => {
    expect(encodeItems("array", items).toString()).toBe('[{"a":1},"not json",[2]]');
    expect(encodeItems("array", []).toString()).toBe("[]");
  });

  it("object: one item alone, several or none as an array", () => {
    expect(encodeItems("object", [{ kind: "json", value: { a: 1 } }]).toString()).toBe('{"a":1}');
    expect(encodeItems("object", items).toString()).toBe('[{"a":1},"not json",[2]]');
    expect(encodeItems("object", []).toString()).toBe("[]");
  });

  it("round-trips each framing through decode", () => {
    for (const [framing, body] of Object.entries(bodies)) {
      const decoded = decode(Buffer.from(body.text), { contentType: body.contentType });
      expect(encodeItems(decoded.framing, decoded.items).toString()).toBe(body.text);
      expect(framing).toBe(decoded.framing);
    }
  });

  it("encode appends unparsed lines", () => {
    expect(encode("ndjson", [{ a: 1 }], ["raw"]).toString()).toBe('{"a":1}\nraw\n');
  });
});

describe("decompressAsync (large gzip bodies, inflated off the event loop)", () => {
  // Random hex: gzip takes it to about half, so the bodies are past the 64 KiB below which decompress runs.
  const text = (kb: number): Buffer => Buffer.from(randomBytes(kb * 512).toString("hex"));
  const refusal = async (p: Promise<unknown>): Promise<string | undefined> =>
    p.then(
      () => undefined,
      (e: unknown) => (e instanceof DecodeError ? e.code : String(e)),
    );

  it("gives what gunzip gives, declared or sniffed", async () => {
    const plain = text(400);
    const gz = zlib.gzipSync(plain);
    expect(gz.length).toBeGreaterThan(64 * 1024);
    expect((await decompressAsync(gz, { contentEncoding: "gzip", maxDecodedBytes: plain.length })).equals(plain)).toBe(true);
    expect((await decompressAsync(gz, { maxDecodedBytes: plain.length })).equals(plain)).toBe(true);
  });

  it("grows past the size the body announces: several members, the last one small", async () => {
    const big = text(300);
    const small = Buffer.from("tail\n");
    const gz = Buffer.concat([zlib.gzipSync(big), zlib.gzipSync(small)]);
    // The trailer announces only the last member (5 bytes).
    expect(gz.readUInt32LE(gz.length - 4)).toBe(small.length);
    expect((await decompressAsync(gz)).equals(Buffer.concat([big, small]))).toBe(true);
  });

  it("refuses past maxDecodedBytes, and truncated or corrupt bodies", async () => {
    const plain = text(400);
    const gz = zlib.gzipSync(plain);
    expect(await refusal(decompressAsync(gz, { maxDecodedBytes: plain.length - 1 }))).toBe("DNSGEO_BODY_TOO_LARGE");
    expect(await refusal(decompressAsync(gz.subarray(0, gz.length - 20), { contentEncoding: "gzip" }))).toBe("DNSGEO_BAD_COMPRESSION");
    const corrupt = Buffer.from(gz);
    corrupt.writeUInt32LE((corrupt.readUInt32LE(corrupt.length - 4) + 1) >>> 0, corrupt.length - 4);
    expect(await refusal(decompressAsync(corrupt, { contentEncoding: "gzip" }))).toBe("DNSGEO_BAD_COMPRESSION");
  });
});

describe("compress", () => {
  const body = Buffer.from(bodies.ndjson.text.repeat(20));
  for (const enc of ["gzip", "deflate", "snappy"] as const) {
    it(`${enc} round-trips through decode`, () => {
      const wire = compress(body, enc);
      expect(wire.equals(body)).toBe(false);
      expect(decode(wire, { contentEncoding: enc }).items).toHaveLength(60);
    });
  }

  it("none returns the body", () => {
    expect(compress(body, "none")).toBe(body);
  });

  it("zstd works where node:zlib can, else says so with a stable code", () => {
    const hasZstd = typeof (zlib as unknown as { zstdCompressSync?: unknown }).zstdCompressSync === "function";
    if (hasZstd) {
      expect(decode(compress(body, "zstd"), { contentEncoding: "zstd" }).items).toHaveLength(60);
    } else {
      expectCode(() => compress(body, "zstd"), "DNSGEO_UNSUPPORTED_ENCODING");
    }
  });
});

describe("decode keeps the source text of every value", () => {
  it("gives each NDJSON line its exact text, objects and other values alike", () => {
    const body = Buffer.from('{"a": 1}\r\n[1,2]\n  {"b":"x"}  \n42\n');
    const d = decodeWithText(body, { contentType: "application/x-ndjson" });
    expect(d.items).toEqual([
      { kind: "json", value: { a: 1 }, text: '{"a": 1}', src: body, at: 0 },
      { kind: "json", value: [1, 2], text: "[1,2]", src: body, at: 10 },
      { kind: "json", value: { b: "x" }, text: '  {"b":"x"}  ', src: body, at: 16 },
      { kind: "json", value: 42, text: "42", src: body, at: 30 },
    ]);
  });

  it("gives each element of an array body, and an object body, its exact text", () => {
    const arr = decodeWithText(Buffer.from(' [ {"a": 1.0} ,\n 7.6967E7,"\\u0041",[ -0 ] ]'));
    expect(arr.framing).toBe("array");
    expect(arr.items.map((i) => (i.kind === "json" ? i.text : undefined))).toEqual(['{"a": 1.0}', "7.6967E7", '"\\u0041"', "[ -0 ]"]);
    const obj = decodeWithText(Buffer.from('\n{\n  "n": 9223372036854775808\n}\n\n'));
    expect(obj.framing).toBe("object");
    expect(obj.items[0]).toMatchObject({ text: '{\n  "n": 9223372036854775808\n}' });
  });

  it("keeps the bytes of a line that is not JSON and not UTF-8, and only of such a line", () => {
    const bad = Buffer.from([0x61, 0xff, 0xfe, 0x62]);
    const body = Buffer.concat([Buffer.from('{"a":"\u00e9"}\n'), bad, Buffer.from("\nnot json\n")]);
    const d = decodeWithText(body, { contentType: "application/x-ndjson" });
    expect(d.items[0]).toMatchObject({ kind: "json", value: { a: "\u00e9" } });
    expect(d.items[1]).toMatchObject({ kind: "unparsed", bytes: bad });
    expect(d.items[2]).toEqual({ kind: "unparsed", raw: "not json" });
    expect(encodeItems("ndjson", d.items)).toEqual(body);
  });

  it("gives the bytes of a line only when the whole body is ASCII (offsets then match)", () => {
    const ascii = decodeWithText(Buffer.from('\u001e{"a":1}\n{"b":2}\n'), { contentType: "application/x-ndjson" });
    expect(ascii.items.map((i) => (i.kind === "json" && i.src && i.text ? i.src.toString("latin1", i.at, (i.at ?? 0) + i.text.length) : ""))).toEqual(['{"a":1}', '{"b":2}']);
    for (const body of ['{"a":"é"}\n{"b":2}\n', '{"a":1}\n{"b":"\ud83d\ude00"}\n']) {
      const d = decodeWithText(Buffer.from(body), { contentType: "application/x-ndjson" });
      expect(d.items.every((i) => i.kind === "json" && i.src === undefined && i.text !== undefined)).toBe(true);
    }
    // Invalid UTF-8 is not ASCII either: its text (with U+FFFD) is what goes out.
    const bad = decodeWithText(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d, 0x0a]), { contentType: "application/x-ndjson" });
    expect(bad.items[0]).toMatchObject({ kind: "json", value: { a: "\ufffd" } });
    expect((bad.items[0] as { src?: unknown }).src).toBeUndefined();
  });
});
