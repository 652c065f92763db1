/**
 * The msgpack side of the Fluent forward protocol (v1), shared by the listener and the
 * next hop: EventTime (ext type 0), a walker that finds where one msgpack value ends
 * without decoding it (so a message is cut from a TCP stream before it is decoded, and a
 * PackedForward payload is taken as bytes, not copied), and the decoding of one message
 * in each mode into events.
 */
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { addExtension, Packr, Unpackr } from "msgpackr";
import type { MsgpackWriter } from "../codecs/msgpack-writer.js";

/** Fluentd's EventTime: seconds and nanoseconds, msgpack ext type 0 (fixext 8, both big-endian uint32). */
export class EventTime {
  constructor(
    readonly seconds: number,
    readonly nanoseconds: number,
  ) {}
}

// msgpackr refuses to register a packer for ext type 0 (it tests the type for truthiness),
// so the packer is registered under 1 and its type set to 0 before anything is packed;
// the unpacker is registered under 0 on its own.
const eventTimeExt = {
  Class: EventTime,
  type: 1,
  pack(t: EventTime): Buffer {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(t.seconds >>> 0, 0);
    b.writeUInt32BE(t.nanoseconds >>> 0, 4);
    return b;
  },
};
addExtension(eventTimeExt);
eventTimeExt.type = 0;
addExtension({
  type: 0,
  unpack(b: Buffer): EventTime {
    if (b.length !== 8) throw new FluentProtocolError(`EventTime of ${b.length} bytes (want 8)`);
    return new EventTime(b.readUInt32BE(0), b.readUInt32BE(4));
  },
});

/** Records are plain maps: no msgpackr records, 64-bit integers as numbers (JSON has no BigInt). */
export const packr = new Packr({ useRecords: false, variableMapSize: true });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

/** Input that is not the forward protocol; the connection that sent it is closed. */
export class FluentProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FluentProtocolError";
  }
}

/** Fixed header sizes past the type byte, for types whose size the type byte says. */
function fixedSize(t: number): number {
  switch (t) {
    case 0xcc: case 0xd0: return 1;
    case 0xcd: case 0xd1: return 2;
    case 0xca: case 0xce: case 0xd2: return 4;
    case 0xcb: case 0xcf: case 0xd3: return 8;
    case 0xd4: return 2;
    case 0xd5: return 3;
    case 0xd6: return 5;
    case 0xd7: return 9;
    case 0xd8: return 17;
    default: return -1;
  }
}

/**
 * Where the msgpack value starting at `at` ends in `buf`: its end offset, or, when `buf`
 * ends before it does, a negative number: minus the length `buf` must at least have
 * before it can (a str or bin header tells its whole length, so a stream reader waits for
 * that many bytes instead of walking the value again on every packet). Iterative (no recursion, so no depth limit to overflow),
 * reads headers only. Throws FluentProtocolError on the never-used byte 0xc1.
 */
export function valueEnd(buf: Uint8Array, at: number): number {
  let pos = at;
  let pending = 1;
  const n = buf.length;
  while (pending > 0) {
    if (pos >= n) return -(pos + 1);
    const t = buf[pos] as number;
    pos++;
    pending--;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) continue;
    if (t >= 0x80 && t <= 0x8f) { pending += 2 * (t & 0x0f); continue; }
    if (t >= 0x90 && t <= 0x9f) { pending += t & 0x0f; continue; }
    if (t >= 0xa0 && t <= 0xbf) { pos += t & 0x1f; continue; }
    const fixed = fixedSize(t);
    if (fixed >= 0) { pos += fixed; continue; }
    let len: number;
    let hdr: number;
    switch (t) {
      case 0xc4: case 0xd9: case 0xc7: hdr = 1; break;
      case 0xc5: case 0xda: case 0xc8: case 0xdc: case 0xde: hdr = 2; break;
      case 0xc6: case 0xdb: case 0xc9: case 0xdd: case 0xdf: hdr = 4; break;
      default: throw new FluentProtocolError(`invalid msgpack byte 0x${t.toString(16)}`);
    }
    if (pos + hdr > n) return -(pos + hdr);
    len = hdr === 1 ? (buf[pos] as number) : hdr === 2 ? ((buf[pos] as number) << 8) | (buf[pos + 1] as number) : ((buf[pos] as number) * 0x1000000 + (((buf[pos + 1] as number) << 16) | ((buf[pos + 2] as number) << 8) | (buf[pos + 3] as number)));
    pos += hdr;
    if (t === 0xdc || t === 0xdd) pending += len;
    else if (t === 0xde || t === 0xdf) pending += 2 * len;
    else pos += len + (t === 0xc7 || t === 0xc8 || t === 0xc9 ? 1 : 0);
  }
  return pos > n ? -pos : pos;
}

/** One event: its time as sent (integer, float or EventTime), Fluent Bit's v2 metadata when present, and the record. */
export interface FluentEvent {
  time: unknown;
  /** Present when the entry was `[[time, metadata], record]` (Fluent Bit's v2 event format); sent on the same way. */
  meta?: unknown;
  record: unknown;
  /**
   * The entry's own bytes (a view, not a copy) and the offset in them where the record's
   * map starts: set for PackedForward entries, so the enriched entry can be the same
   * bytes with the added keys appended to the map (see `extendEntry`).
   */
  bytes?: Buffer;
  recordAt?: number;
}

/**
 * A PackedForward entry whose record is not decoded yet: its time and metadata, its own
 * bytes (a view) and where the record's map starts in them. Records are decoded a slice
 * at a time as they are enriched (`recordOf`), so a large message's records are never
 * all alive at once (docs/performance.md).
 */
export interface PackedEntry {
  time: unknown;
  meta?: unknown;
  bytes: Buffer;
  recordAt: number;
}

/** The event of a PackedForward entry, its record decoded. */
export function recordOf(e: PackedEntry): FluentEvent {
  const record = unpackr.unpack(e.bytes.subarray(e.recordAt)) as unknown;
  return e.meta === undefined ? { time: e.time, record, bytes: e.bytes, recordAt: e.recordAt } : { time: e.time, meta: e.meta, record, bytes: e.bytes, recordAt: e.recordAt };
}

/** One decoded forward message. */
export interface FluentMessage {
  tag: string;
  /** The events; for a PackedForward message read by `readMessage`, those not in `entries`. */
  events: FluentEvent[];
  /** Set by `readMessage` for a PackedForward message of `[time, record]` entries: its entries, records not decoded. */
  entries?: PackedEntry[];
  /** The `chunk` option: the sender waits for `{ack: chunk}`. */
  chunk?: string;
  /** Fluent Bit's `fluent_signal` option when not logs (1 metrics, 2 traces): passed on, not enriched. */
  signal?: number;
  /** For a signal other than logs: the PackedForward payload as it came (uncompressed). */
  raw?: Buffer;
  /** The mode it came in, for logs and tests. */
  mode: "message" | "forward" | "packed" | "compressed";
}

function isTime(v: unknown): boolean {
  return (typeof v === "number" && Number.isFinite(v)) || v instanceof EventTime;
}

/** `[time, record]` or `[[time, metadata], record]` → FluentEvent. */
function toEvent(e: unknown): FluentEvent {
  if (!Array.isArray(e) || e.length !== 2) throw new FluentProtocolError("an entry is not [time, record]");
  const [t, record] = e as [unknown, unknown];
  if (Array.isArray(t)) {
    if (t.length !== 2 || !isTime(t[0])) throw new FluentProtocolError("a v2 entry's header is not [time, metadata]");
    return { time: t[0], meta: t[1], record };
  }
  if (!isTime(t)) throw new FluentProtocolError("an entry's time is neither a number nor an EventTime");
  return { time: t, record };
}

function optionOf(v: unknown): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) throw new FluentProtocolError("the option is not a map");
  return v as Record<string, unknown>;
}

/** Offsets of the elements of the msgpack array at the start of `buf` (the whole of `buf` is that array). */
function arrayElements(buf: Buffer): { count: number; starts: number[] } {
  const t = buf[0] as number;
  let count: number;
  let at: number;
  if (t >= 0x90 && t <= 0x9f) { count = t & 0x0f; at = 1; }
  else if (t === 0xdc) { count = buf.readUInt16BE(1); at = 3; }
  else if (t === 0xdd) { count = buf.readUInt32BE(1); at = 5; }
  else throw new FluentProtocolError("a message is not an array");
  if (count < 2 || count > 4) throw new FluentProtocolError(`a message of ${count} elements (want 2 to 4)`);
  const starts = [at];
  for (let i = 0; i < count; i++) {
    const end = valueEnd(buf, at);
    if (end < 0) throw new FluentProtocolError("a message ends inside an element");
    at = end;
    starts.push(at);
  }
  return { count, starts };
}

/** The payload bytes of the bin or str value `v` (a PackedForward stream, a handshake field), or undefined when it is another type. */
export function rawBytes(v: Buffer): Buffer | undefined {
  const t = v[0] as number;
  if (t >= 0xa0 && t <= 0xbf) return v.subarray(1);
  if (t === 0xc4 || t === 0xd9) return v.subarray(2);
  if (t === 0xc5 || t === 0xda) return v.subarray(3);
  if (t === 0xc6 || t === 0xdb) return v.subarray(5);
  return undefined;
}

/** Limits of `decodeMessage`. */
export interface DecodeLimits {
  /** Largest CompressedPackedForward payload after gunzip. */
  maxDecodedBytes: number;
}

/**
 * Decodes one whole forward message (the exact bytes of one top-level msgpack array) in
 * any mode, every record decoded. Throws FluentProtocolError (or msgpackr's error) on
 * anything else.
 */
export function decodeMessage(buf: Buffer, limits: DecodeLimits): FluentMessage {
  const m = readMessage(buf, limits);
  if (m.entries === undefined) return m;
  m.events = m.entries.map((e) => {
    const ev = recordOf(e);
    // Not enumerable: the event reads and compares as the decoded entry it is.
    const plain: FluentEvent = ev.meta === undefined ? { time: ev.time, record: ev.record } : { time: ev.time, meta: ev.meta, record: ev.record };
    return Object.defineProperties(plain, { bytes: { value: e.bytes }, recordAt: { value: e.recordAt } });
  });
  delete m.entries;
  return m;
}

/**
 * `decodeMessage` with the records of a PackedForward message left as bytes (`entries`):
 * the message's shape, times and metadata are checked here, a record is decoded when it
 * is enriched.
 */
export function readMessage(buf: Buffer, limits: DecodeLimits): FluentMessage {
  const { count, starts } = arrayElements(buf);
  const el = (i: number): Buffer => buf.subarray(starts[i], starts[i + 1]);
  const tag = unpackr.unpack(el(0)) as unknown;
  if (typeof tag !== "string") throw new FluentProtocolError("the tag is not a string");
  const second = el(1);
  const st = second[0] as number;
  const isArray = (st >= 0x90 && st <= 0x9f) || st === 0xdc || st === 0xdd;
  const packed = isArray ? undefined : rawBytes(second);
  if (isArray) {
    if (count > 3) throw new FluentProtocolError("a Forward message of more than 3 elements");
    const option = optionOf(count === 3 ? unpackr.unpack(el(2)) : undefined);
    const entries = unpackr.unpack(second) as unknown[];
    return finish({ tag, events: entries.map(toEvent), mode: "forward" }, option);
  }
  if (packed !== undefined) {
    if (count > 3) throw new FluentProtocolError("a PackedForward message of more than 3 elements");
    const option = optionOf(count === 3 ? unpackr.unpack(el(2)) : undefined);
    let stream = packed;
    let mode: FluentMessage["mode"] = "packed";
    if (option.compressed !== undefined) {
      if (option.compressed !== "gzip" && option.compressed !== "text") throw new FluentProtocolError(`compressed: ${String(option.compressed).slice(0, 20)} is not gzip`);
      if (option.compressed === "gzip") {
        mode = "compressed";
        try {
          stream = gunzipSync(packed, { maxOutputLength: limits.maxDecodedBytes });
        } catch (e) {
          throw new FluentProtocolError(`gzip payload: ${(e as Error).message.slice(0, 80)}`);
        }
      }
    }
    const signal = typeof option.fluent_signal === "number" ? option.fluent_signal : 0;
    if (signal !== 0) return finish({ tag, events: [], mode, signal, raw: Buffer.from(stream) }, option);
    const events: FluentEvent[] = [];
    const entries: PackedEntry[] = [];
    let at = 0;
    while (at < stream.length) {
      const end = valueEnd(stream, at);
      if (end < 0) throw new FluentProtocolError("a PackedForward stream ends inside an entry");
      const bytes = stream.subarray(at, end);
      // [time, record] and [[time, meta], record] are fixarrays of 2: the record follows the
      // first element and is decoded when it is enriched, not here. Other forms are decoded now.
      if (bytes[0] === 0x92) {
        const recordAt = valueEnd(bytes, 1);
        const head = toEvent([unpackr.unpack(bytes.subarray(1, recordAt)), undefined]);
        entries.push(head.meta === undefined ? { time: head.time, bytes, recordAt } : { time: head.time, meta: head.meta, bytes, recordAt });
      } else {
        if (entries.length > 0) events.push(...entries.splice(0).map(recordOf));
        events.push(toEvent(unpackr.unpack(bytes)));
      }
      at = end;
    }
    if (events.length > 0) events.push(...entries.splice(0).map(recordOf));
    return finish(events.length > 0 ? { tag, events, mode } : { tag, events, entries, mode }, option);
  }
  // Message mode: [tag, time, record, option?]
  if (count < 3) throw new FluentProtocolError("a Message of 2 elements has no record");
  const time = unpackr.unpack(second) as unknown;
  if (!isTime(time)) throw new FluentProtocolError("a Message's time is neither a number nor an EventTime");
  const record = unpackr.unpack(el(2)) as unknown;
  const option = optionOf(count === 4 ? unpackr.unpack(el(3)) : undefined);
  return finish({ tag, events: [{ time, record }], mode: "message" }, option);
}

function finish(m: FluentMessage, option: Record<string, unknown>): FluentMessage {
  const chunk = option.chunk;
  if (chunk !== undefined) {
    if (typeof chunk !== "string" || chunk.length > 256) throw new FluentProtocolError("the chunk option is not a short string");
    m.chunk = chunk;
  }
  return m;
}

/** One entry as sent to a next hop: `[time, record]`, or `[[time, metadata], record]` when it came with metadata. */
export function packEntry(time: unknown, meta: unknown, record: unknown): Buffer {
  return packr.pack(meta === undefined ? [time, record] : [[time, meta], record]);
}

/** A PackedForward message of already packed entries, with options. */
export function packPackedForward(tag: string, entries: Buffer, option: Record<string, unknown>): Buffer {
  return packr.pack([tag, entries, option]);
}

/** Count and body offset of the msgpack map at `at`, or undefined when the value there is no map. */
function mapHeader(buf: Buffer, at: number): { count: number; body: number } | undefined {
  const t = buf[at] as number;
  if (t >= 0x80 && t <= 0x8f) return { count: t & 0x0f, body: at + 1 };
  if (t === 0xde) return { count: buf.readUInt16BE(at + 1), body: at + 3 };
  if (t === 0xdf) return { count: buf.readUInt32BE(at + 1), body: at + 5 };
  return undefined;
}

/**
 * The enriched entry as the original entry's bytes with `added` keys appended to its
 * record's map (the header's count rewritten, every original key and value left as it
 * came), or undefined when that does not give the enriched record: `out` must be the
 * record's own keys, in order and with the very same values, followed by the added keys
 * (what the ECS formatter gives a record holding none of the keys dnsgeo owns). The
 * caller then packs `out` whole.
 */
export function extendEntry(ev: FluentEvent, out: unknown): { head: Buffer; body: Buffer; added: Buffer } | undefined {
  const { bytes, recordAt, record } = ev;
  if (bytes === undefined || recordAt === undefined || recordAt <= 0 || out === record) return undefined;
  if (record === null || typeof record !== "object" || Array.isArray(record) || out === null || typeof out !== "object" || Array.isArray(out)) return undefined;
  const h = mapHeader(bytes, recordAt);
  if (h === undefined) return undefined;
  const orig = record as Record<string, unknown>;
  const o = out as Record<string, unknown>;
  const keys = Object.keys(o);
  // Duplicate or non-string keys in the map: the decoded object has fewer keys than its header says.
  let n = 0;
  for (const k in orig) {
    if (keys[n] !== k || o[k] !== orig[k]) return undefined;
    n++;
  }
  if (n !== h.count || keys.length - n > 15) return undefined;
  const addObj: Record<string, unknown> = {};
  for (let i = n; i < keys.length; i++) addObj[keys[i] as string] = o[keys[i] as string];
  // A fixmap of at most 15 keys: its header is one byte.
  const added = packr.pack(addObj).subarray(1);
  const count = keys.length;
  const head = Buffer.allocUnsafe(recordAt + 5);
  bytes.copy(head, 0, 0, recordAt);
  let hl = recordAt;
  if (count <= 15) head[hl++] = 0x80 | count;
  else if (count <= 0xffff) {
    head[hl++] = 0xde;
    head.writeUInt16BE(count, hl);
    hl += 2;
  } else {
    head[hl++] = 0xdf;
    head.writeUInt32BE(count, hl);
    hl += 4;
  }
  return { head: head.subarray(0, hl), body: bytes.subarray(h.body), added };
}

/** How many keys the decoded map `o` has. */
function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/**
 * Writes `ev`'s entry into `w` with `count` more key/value pairs (`added[from, to)`,
 * msgpack) appended to its record's map, the map header's count rewritten. The record is
 * its own bytes, every original key and value as it came, when the entry has them and its
 * map decodes to the record (no duplicate keys); else it is packed from the decoded
 * record. `ev.record` must be a map.
 */
export function writeExtendedEntry(w: MsgpackWriter, ev: FluentEvent, count: number, added: Buffer, from: number, to: number): void {
  let bytes = ev.bytes;
  let at = ev.recordAt ?? 0;
  let h = bytes !== undefined && at > 0 ? mapHeader(bytes, at) : undefined;
  if (bytes === undefined || h === undefined || h.count !== keyCount(ev.record as object)) {
    bytes = packEntry(ev.time, ev.meta, ev.record);
    at = valueEnd(bytes, 1);
    h = mapHeader(bytes, at);
    if (h === undefined) throw new Error("an enriched record is not a map");
  }
  w.copy(bytes, 0, at);
  w.mapHeader(h.count + count);
  w.copy(bytes, h.body, bytes.length);
  w.copy(added, from, to);
}

/** Hex SHA-512 of the parts, as the forward protocol's handshake digests are written. */
export function handshakeDigest(...parts: Array<string | Buffer>): string {
  const h = createHash("sha512");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}
