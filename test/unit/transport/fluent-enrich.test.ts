/**
 * The listener's enrichment of a message (`enrichEntries`): records decoded and enriched a
 * slice at a time, each entry its own bytes plus the added keys written as msgpack; what
 * comes out decodes to what the object path gives, in order, with each entry's time and
 * metadata, whatever the slice boundaries.
 */
import { Unpackr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../../src/app.js";
import { loadConfig } from "../../../src/config.js";
import { EventTime, packEntry, packPackedForward, readMessage } from "../../../src/transport/fluent-codec.js";
import { enrichEntries } from "../../../src/transport/fluent-server.js";
import { cacheEntries, publicIp, route53Record } from "../../../bench/data.js";

const LIMITS = { maxDecodedBytes: 64 * 1024 * 1024 };
/** Reads 64-bit integers as BigInt, so a lost digit shows. */
const exact = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "bigint" });
const plain = new Unpackr({ useRecords: false, mapsAsObjects: true });

let app: App;
beforeAll(async () => {
  app = await createApp(loadConfig({ overrides: { ipapi: { enabled: false }, mmdb: { enabled: false }, cache: { sqlite: { enabled: false } }, log: { level: "silent" } } }));
  // Half of the answers' IPs are cached (enriched), the others are not (pending).
  await app.cache.set(cacheEntries(20));
});
afterAll(async () => {
  await app.close();
});

describe("enrichEntries", () => {
  it("gives, for 700 records over several slices, the entries the object path gives, times and metadata kept", async () => {
    // Prepare: v1 and v2 entries, records with and without keys dnsgeo owns
    const records = Array.from({ length: 700 }, (_, i) => {
      const r = route53Record(i, 40);
      if (i % 7 === 0) r.dnsgeo = { mine: i };
      if (i % 11 === 0) r.destination = { ip: publicIp(3) };
      return r;
    });
    const entries = records.map((r, i) => (i % 2 === 0 ? packEntry(new EventTime(1_700_000_000 + i, i), undefined, r) : packEntry(i, { n: i }, r)));
    const msg = readMessage(packPackedForward("t", Buffer.concat(entries), {}), LIMITS);
    const want = await app.enricher.enrichDecoded({ framing: "ndjson", items: records.map((r) => ({ kind: "json", value: structuredClone(r) })) }, { explode: false });
    // Act
    const out = await enrichEntries(app.enricher, msg);
    // Assess
    expect(out).toHaveLength(700);
    out.forEach((e, i) => {
      const it = want.items[i];
      const value = it?.kind === "json" ? it.value : undefined;
      expect(plain.unpack(e)).toEqual(i % 2 === 0 ? [new EventTime(1_700_000_000 + i, i), value] : [[i, { n: i }], value]);
    });
  });

  it("keeps a record's own bytes: a uint64 comes out exact; a map with a duplicate key is packed from its decoded record", async () => {
    // Prepare: {id: 2^64 - 1, answers: […]} by hand, and {a: 1, a: 2}
    const answers = plain.unpack(packEntry(0, undefined, { answers: [{ Rdata: publicIp(1), Type: "A" }] }).subarray(2)) as Record<string, unknown>;
    const id = Buffer.concat([packEntry(0, undefined, "id").subarray(2), Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]);
    const big = Buffer.concat([Buffer.from([0x92, 0x01, 0x83]), id, packEntry(0, undefined, "query_name").subarray(2), packEntry(0, undefined, "x.example.").subarray(2), packEntry(0, undefined, "answers").subarray(2), packEntry(0, undefined, answers.answers).subarray(2)]);
    const a = packEntry(0, undefined, "a").subarray(2);
    const dup = Buffer.concat([Buffer.from([0x92, 0x02, 0x82]), a, Buffer.from([0x01]), a, Buffer.from([0x02])]);
    const msg = readMessage(packPackedForward("t", Buffer.concat([big, dup]), {}), LIMITS);
    // Act
    const [bigOut, dupOut] = await enrichEntries(app.enricher, msg);
    // Assess
    const [, rec] = exact.unpack(bigOut as Buffer) as [number, Record<string, unknown>];
    expect(rec.id).toBe(2n ** 64n - 1n);
    expect(rec.query_name).toBe("x.example.");
    expect((rec.dnsgeo as { status: string }).status).toBe("enriched");
    expect(Object.keys(rec)).toEqual(["id", "query_name", "answers", "dns", "destination", "dnsgeo"]);
    const [, d] = plain.unpack(dupOut as Buffer) as [number, Record<string, unknown>];
    expect(d.a).toBe(2);
    expect(Object.keys(d)).toEqual(["a", "dnsgeo"]);
  });
});
