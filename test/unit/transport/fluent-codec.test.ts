import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { pack } from "msgpackr";
import { describe, expect, it } from "vitest";
import { decodeMessage, EventTime, FluentProtocolError, packEntry, packPackedForward, valueEnd } from "../../../src/transport/fluent-codec.js";
import { array, eventTimeBytes } from "../../helpers/fluent-wire.js";

const LIMITS = { maxDecodedBytes: 1024 * 1024 };

const REC = { query_name: "example.com", answers: [{ Rdata: "93.184.216.34", Type: "A" }] };

describe("Fluent forward protocol: decoding each mode", () => {
  it("Message mode: [tag, time, record, option] with an EventTime and a chunk", () => {
    // Prepare
    const bytes = array(pack("dns.r53"), eventTimeBytes(1_700_000_000, 123_456_789), pack(REC), pack({ chunk: "c1" }));
    // Act
    const m = decodeMessage(bytes, LIMITS);
    // Assess
    expect(m).toMatchObject({ tag: "dns.r53", mode: "message", chunk: "c1" });
    expect(m.events).toEqual([{ time: new EventTime(1_700_000_000, 123_456_789), record: REC }]);
  });

  it("Message mode without an option and with an integer time", () => {
    // Act
    const m = decodeMessage(pack(["t", 1_700_000_000, { a: 1 }]), LIMITS);
    // Assess
    expect(m.chunk).toBeUndefined();
    expect(m.events).toEqual([{ time: 1_700_000_000, record: { a: 1 } }]);
  });

  it("Forward mode: [tag, [[time, record], ...], option], v1 and Fluent Bit v2 entries", () => {
    // Prepare
    const entries = Buffer.concat([Buffer.from([0x92]), array(eventTimeBytes(5, 6), pack({ a: 1 })), array(array(eventTimeBytes(7, 8), pack({ m: "x" })), pack({ b: 2 }))]);
    // Act
    const m = decodeMessage(array(pack("t"), entries, pack({ chunk: "k", size: 2 })), LIMITS);
    // Assess
    expect(m.mode).toBe("forward");
    expect(m.chunk).toBe("k");
    expect(m.events).toEqual([
      { time: new EventTime(5, 6), record: { a: 1 } },
      { time: new EventTime(7, 8), meta: { m: "x" }, record: { b: 2 } },
    ]);
  });

  it("PackedForward mode: the entries as one bin, and as one str (older clients)", () => {
    // Prepare
    const stream = Buffer.concat([array(eventTimeBytes(1, 2), pack({ a: 1 })), array(pack(3), pack({ b: 2 }))]);
    const str = Buffer.concat([Buffer.from([0xd9, stream.length]), stream]);
    // Act
    const bin = decodeMessage(array(pack("t"), Buffer.concat([Buffer.from([0xc4, stream.length]), stream]), pack({ chunk: "p" })), LIMITS);
    const fromStr = decodeMessage(array(pack("t"), str), LIMITS);
    // Assess
    expect(bin.mode).toBe("packed");
    expect(bin.chunk).toBe("p");
    expect(bin.events).toEqual([
      { time: new EventTime(1, 2), record: { a: 1 } },
      { time: 3, record: { b: 2 } },
    ]);
    expect(fromStr.events).toEqual(bin.events);
  });

  it("CompressedPackedForward mode: gzip, also as several gzip members one after another", () => {
    // Prepare
    const e1 = array(eventTimeBytes(1, 0), pack({ a: 1 }));
    const e2 = array(array(eventTimeBytes(2, 0), pack({})), pack({ b: 2 }));
    const one = gzipSync(Buffer.concat([e1, e2]));
    const two = Buffer.concat([gzipSync(e1), gzipSync(e2)]);
    // Act
    const a = decodeMessage(pack(["t", one, { compressed: "gzip", chunk: "z" }]), LIMITS);
    const b = decodeMessage(pack(["t", two, { compressed: "gzip" }]), LIMITS);
    // Assess
    expect(a.mode).toBe("compressed");
    expect(a.events.map((e) => e.record)).toEqual([{ a: 1 }, { b: 2 }]);
    expect(a.events[1]?.meta).toEqual({});
    expect(b.events).toEqual(a.events);
  });

  it("a gzip payload that inflates past the limit is refused", () => {
    // Prepare
    const big = gzipSync(Buffer.concat(Array.from({ length: 2000 }, () => array(pack(1), pack({ pad: "x".repeat(1000) })))));
    // Act / Assess
    expect(() => decodeMessage(pack(["t", big, { compressed: "gzip" }]), LIMITS)).toThrow(FluentProtocolError);
  });

  it("Fluent Bit's metrics/traces signals are kept as bytes, not decoded as events", () => {
    // Act
    const m = decodeMessage(pack(["t", Buffer.from([1, 2, 3]), { fluent_signal: 1, chunk: "s" }]), LIMITS);
    // Assess
    expect(m.signal).toBe(1);
    expect(m.raw).toEqual(Buffer.from([1, 2, 3]));
    expect(m.events).toEqual([]);
  });

  it.each([
    ["a tag that is not a string", pack([1, 2, {}])],
    ["too few elements", pack(["t"])],
    ["too many elements", pack(["t", 1, {}, {}, {}])],
    ["an entry that is not a pair", pack(["t", [[1, {}, 3]]])],
    ["an entry time that is a string", pack(["t", [["now", {}]]])],
    ["an option that is not a map", pack(["t", [[1, {}]], 5])],
    ["an unknown compression", pack(["t", Buffer.from([0x92, 1, 0x80]), { compressed: "zstd" }])],
    ["a gzip option on bytes that are not gzip", pack(["t", Buffer.from([0x92, 1, 0x80]), { compressed: "gzip" }])],
    ["a packed stream cut inside an entry", pack(["t", Buffer.from([0x92, 1])])],
    ["a chunk that is not a string", pack(["t", [[1, {}]], { chunk: 7 }])],
  ])("refuses %s", (_what, bytes) => {
    // Act / Assess
    expect(() => decodeMessage(bytes, LIMITS)).toThrow(FluentProtocolError);
  });
});

describe("Fluent forward protocol: encoding for the next hop", () => {
  it("packs a PackedForward message that decodes back to the same events, metadata kept", () => {
    // Prepare
    const entries = Buffer.concat([packEntry(new EventTime(9, 10), undefined, { a: 1 }), packEntry(11, { k: "v" }, { b: 2 })]);
    // Act
    const m = decodeMessage(packPackedForward("out", entries, { chunk: "x", size: 2 }), LIMITS);
    // Assess
    expect(m.events).toEqual([
      { time: new EventTime(9, 10), record: { a: 1 } },
      { time: 11, meta: { k: "v" }, record: { b: 2 } },
    ]);
    // EventTime goes out as fixext 8 of type 0, as the spec has it.
    expect(packEntry(new EventTime(1, 2), undefined, {}).subarray(1, 11)).toEqual(eventTimeBytes(1, 2));
  });
});

describe("valueEnd: where a message ends in a stream", () => {
  it("is the length for a whole message and negative, never past the message, for every prefix", () => {
    // Prepare
    const msg = pack(["t", Buffer.alloc(300, 1), { chunk: "c" }, [1, 2.5, "x", null, true, { k: [-1, -200, 70000, 2 ** 40] }]]);
    // Act / Assess
    expect(valueEnd(msg, 0)).toBe(msg.length);
    for (let n = 0; n < msg.length; n++) {
      const r = valueEnd(msg.subarray(0, n), 0);
      expect(r, `prefix ${n}`).toBeLessThan(0);
      expect(-r, `prefix ${n}`).toBeGreaterThan(n);
      expect(-r, `prefix ${n}`).toBeLessThanOrEqual(msg.length);
    }
  });

  it("tells a bin's whole size from its header, so a reader waits for it instead of re-reading", () => {
    // Prepare
    const msg = pack(["t", Buffer.alloc(100_000, 1), {}]);
    // Act
    const r = valueEnd(msg.subarray(0, 20), 0);
    // Assess
    expect(-r).toBeGreaterThanOrEqual(100_000);
  });

  it("agrees with msgpackr on any value and on garbage only throws, never hangs or crashes (fast-check)", () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 4, withBigInt: false, withDate: false, withMap: false, withSet: false, withTypedArray: false, withSparseArray: false, withObjectString: false, withBoxedValues: false }), (v) => {
        const b = pack(v);
        expect(valueEnd(b, 0)).toBe(b.length);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const b = Buffer.from(bytes);
        try {
          valueEnd(b, 0);
          decodeMessage(b.length > 0 && (b[0] as number) >= 0x90 && (b[0] as number) <= 0x9f ? b : Buffer.concat([Buffer.from([0x93]), b]), LIMITS);
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
