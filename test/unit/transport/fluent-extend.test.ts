/**
 * The forward path's fast encoding: an enriched record that is its own record plus added
 * keys goes out as the entry's own bytes with the added keys appended to its map
 * (`extendEntry`); anything else falls back to packing the whole record.
 */
import { pack, Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { decodeMessage, EventTime, extendEntry, packEntry, packPackedForward, type FluentEvent } from "../../../src/transport/fluent-codec.js";

const LIMITS = { maxDecodedBytes: 1024 * 1024 };
/** Reads 64-bit integers as BigInt, so a lost digit shows. */
const exact = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "bigint" });

/** The events of a PackedForward message holding `entries` (each already packed). */
function eventsOf(...entries: Buffer[]): FluentEvent[] {
  return decodeMessage(packPackedForward("t", Buffer.concat(entries), {}), LIMITS).events;
}

function joinExt(x: { head: Buffer; body: Buffer; added: Buffer }): Buffer {
  return Buffer.concat([x.head, x.body, x.added]);
}

describe("extendEntry: the enriched record as the entry's own bytes plus the added keys", () => {
  it("appends the added keys to the map and decodes to what packing the whole record gives, for [time, record] and [[time, meta], record]", () => {
    // Prepare
    const rec = { query_name: "example.com", answers: [{ Rdata: "93.184.216.34", Type: "A" }] };
    const [plain, v2] = eventsOf(packEntry(new EventTime(5, 6), undefined, rec), packEntry(7, { k: "v" }, rec)) as [FluentEvent, FluentEvent];
    const out = (ev: FluentEvent): Record<string, unknown> => Object.assign({}, ev.record as object, { dnsgeo: { status: "enriched" }, destination: { ip: "93.184.216.34" } });
    // Act
    const a = extendEntry(plain, out(plain));
    const b = extendEntry(v2, out(v2));
    // Assess
    expect(a).toBeDefined();
    expect(b).toBeDefined();
    expect(exact.unpack(joinExt(a as NonNullable<typeof a>))).toEqual(exact.unpack(packEntry(new EventTime(5, 6), undefined, out(plain))));
    expect(exact.unpack(joinExt(b as NonNullable<typeof b>))).toEqual(exact.unpack(packEntry(7, { k: "v" }, out(v2))));
  });

  it("keeps the record's own bytes: a 64-bit integer the decoded object cannot hold exactly comes out exact", () => {
    // Prepare: {id: 2^64 - 1} as msgpack, by hand (uint64 0xcf).
    const recBytes = Buffer.concat([Buffer.from([0x81]), pack("id"), Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]);
    const entry = Buffer.concat([Buffer.from([0x92]), pack(1), recBytes]);
    const [ev] = eventsOf(entry) as [FluentEvent];
    // Act
    const x = extendEntry(ev, Object.assign({}, ev.record as object, { dnsgeo: { status: "skipped" } }));
    // Assess
    expect(x).toBeDefined();
    expect(exact.unpack(joinExt(x as NonNullable<typeof x>))).toEqual([1, { id: 2n ** 64n - 1n, dnsgeo: { status: "skipped" } }]);
  });

  it("writes a map16 header once the record and the added keys pass 15 keys", () => {
    // Prepare
    const rec: Record<string, number> = {};
    for (let i = 0; i < 14; i++) rec[`k${i}`] = i;
    const [ev] = eventsOf(packEntry(1, undefined, rec)) as [FluentEvent];
    const out = Object.assign({}, ev.record as object, { dns: { resolved_ip: ["1.1.1.1"] }, dnsgeo: { status: "enriched" } });
    // Act
    const x = extendEntry(ev, out);
    // Assess
    expect(x?.head.at(-3)).toBe(0xde);
    expect(exact.unpack(joinExt(x as NonNullable<typeof x>))).toEqual([1, out]);
  });

  it("falls back (undefined) when the output is not the record plus added keys: a key dnsgeo owns moved, a value replaced, nothing added, duplicate keys, no map", () => {
    // Prepare
    const [owned] = eventsOf(packEntry(1, undefined, { a: 1, dnsgeo: { mine: true } })) as [FluentEvent];
    const ownedOut = { a: 1, dnsgeo: { status: "enriched" }, dnsgeo_original: { mine: true } };
    const [replaced] = eventsOf(packEntry(1, undefined, { a: 1, tags: ["x"] })) as [FluentEvent];
    const replacedOut = Object.assign({}, replaced.record as object, { tags: ["x", "y"] });
    // {a: 1, a: 2}: a map of 2 entries whose decoded object has one key.
    const dup = Buffer.concat([Buffer.from([0x92]), pack(1), Buffer.from([0x82]), pack("a"), pack(1), pack("a"), pack(2)]);
    const [dupEv] = eventsOf(dup) as [FluentEvent];
    const [notMap] = eventsOf(packEntry(1, undefined, "a line")) as [FluentEvent];
    // Act / Assess
    expect(extendEntry(owned, ownedOut)).toBeUndefined();
    expect(extendEntry(replaced, replacedOut)).toBeUndefined();
    expect(extendEntry(replaced, replaced.record)).toBeUndefined();
    expect(extendEntry(dupEv, Object.assign({}, dupEv.record as object, { dnsgeo: {} }))).toBeUndefined();
    expect(extendEntry(notMap, { log: "a line", dnsgeo: {} })).toBeUndefined();
    // A decoded event that carries no bytes (Forward or Message mode) always falls back.
    expect(extendEntry({ time: 1, record: { a: 1 } }, { a: 1, dnsgeo: {} })).toBeUndefined();
  });
});
