/**
 * Wire encoding of `dnsgeo.v1.EnrichResponse` straight from the pipeline's output.
 *
 * protobufjs would need every record as one string first: the ECS fast path keeps
 * a record as the pieces of its JSON text, and joining them then encoding the
 * joined string copies each byte twice more. This writes the pieces into the
 * message buffer directly. The field numbers are the proto file's; a test decodes
 * these bytes with protobufjs from the proto file and compares.
 *
 * The message is encoded when grpc-js serializes it, into a buffer reused for every
 * answer: grpc-js (`serializeMessage`) copies the serialized bytes into the frame it
 * sends before it returns, so the bytes are not needed after that. A new buffer of an
 * answer's size (~145 KB for 100 records) for every call cost page faults on fresh
 * memory (see OutputBuffers); the frame grpc-js allocates is its own.
 */
import { writeItemText } from "../pipeline/framing.js";
import type { EncodableItem } from "../pipeline/types.js";
import { expectWire, Malformed, ProtoWriter, Reader, WIRE_LEN, WIRE_VARINT } from "../codecs/protobuf.js";

/** An EnrichResponse to be written in wire form by the service's serializer (`passEncoded`). */
export class EncodedMessage {
  constructor(readonly parts: EnrichResponseParts) {}
  /** The wire bytes in a buffer of their own. */
  get bytes(): Buffer {
    return writeEnrichResponse(this.parts);
  }
}

export interface EnrichResponseParts {
  items: readonly EncodableItem[];
  counts: Readonly<Record<string, number>>;
  id: string;
  lookedUp: number;
}

// Tags: (field number << 3) | wire type.
const TAG_RECORDS = (1 << 3) | 2;
const TAG_COUNTS = (2 << 3) | 2;
const TAG_ID = (3 << 3) | 2;
const TAG_LOOKED_UP = (4 << 3) | 0;
const TAG_MAP_KEY = (1 << 3) | 2;
const TAG_MAP_VALUE = (2 << 3) | 0;

/** An EnrichResponse with the bytes protobufjs gives for `{records, counts, id, looked_up}`. */
export function encodeEnrichResponse(r: EnrichResponseParts): EncodedMessage {
  return new EncodedMessage(r);
}

/** Largest scratch buffer kept between answers; a larger answer gets a buffer of its own. */
const MAX_SCRATCH = 16 * 1024 * 1024;
let scratch: Buffer | undefined;

/** A buffer of at least `bytes` to write the next answer into, valid until the next call. */
function scratchFor(bytes: number): Buffer | undefined {
  if (bytes > MAX_SCRATCH) return undefined;
  if (scratch === undefined || scratch.length < bytes) {
    let size = 64 * 1024;
    while (size < bytes) size *= 2;
    scratch = Buffer.allocUnsafe(Math.min(size, MAX_SCRATCH));
  }
  return scratch;
}

/** Characters of an answer's text (a JSON record without its source text counts 256): the writer's first size guess. */
function charsOf(r: EnrichResponseParts): number {
  let chars = 64 + r.id.length;
  for (const it of r.items) {
    if (it.kind === "jsontext") for (const p of it.parts) chars += p.length;
    else chars += it.kind === "unparsed" ? it.raw.length : 256;
    chars += 4;
  }
  return chars;
}

/** Writes the wire bytes; `reuse`: into the shared scratch buffer (a view valid until the next reusing call). */
function writeEnrichResponse(r: EnrichResponseParts, reuse = false): Buffer {
  const chars = charsOf(r);
  const w = new ProtoWriter(chars, reuse ? scratchFor(chars) : undefined);
  for (const it of r.items) {
    w.byte(TAG_RECORDS);
    w.delimited(() => writeItemText(w, it));
  }
  for (const key of Object.keys(r.counts)) {
    const n = r.counts[key] ?? 0;
    w.byte(TAG_COUNTS);
    w.delimited(() => {
      w.byte(TAG_MAP_KEY);
      w.delimited(() => w.str(key));
      w.byte(TAG_MAP_VALUE);
      w.varint(n);
    });
  }
  // Written even when empty or zero, as protobufjs writes a field that is set: clients
  // decoding with proto-loader's `defaults: false` see "" and 0, not a missing field.
  w.byte(TAG_ID);
  w.delimited(() => w.str(r.id));
  w.byte(TAG_LOOKED_UP);
  w.varint(r.lookedUp);
  return w.finish();
}

/**
 * Wraps a method's serializer so an `EncodedMessage` is written straight to wire form.
 * Its bytes are a view of a buffer the next such call overwrites: only for a caller
 * that copies them at once, as grpc-js's server does (a test checks concurrent
 * answers keep their own records).
 */
export function passEncoded<T>(serialize: (value: T) => Buffer): (value: T | EncodedMessage) => Buffer {
  return (value) => (value instanceof EncodedMessage ? writeEnrichResponse(value.parts, true) : serialize(value));
}

/**
 * A request that could not be decoded. grpc-js answers a deserializer that throws with
 * INTERNAL "Error deserializing request", which clients retry forever and which names
 * nothing; returned instead of throwing, it lets the handler answer INVALID_ARGUMENT
 * saying what is wrong.
 */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** `dnsgeo.v1.EnrichRequest` as proto-loader gives it with the server's options (`arrays: true`, no defaults). */
export interface EnrichRequestFields {
  records: string[];
  format?: string;
  explode?: boolean;
  id?: string;
}

/** `dnsgeo.v1.LookupRequest`, as above. */
export interface LookupRequestFields {
  ips: string[];
}

function readFields(buf: Buffer, message: string, onField: (r: Reader, field: number, wire: number) => boolean): MalformedRequest | undefined {
  const r = new Reader(buf);
  try {
    while (!r.done()) {
      const tag = r.varint("tag");
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 0) throw new Malformed(`field number 0 at byte ${r.pos}`);
      if (!onField(r, field, wire)) r.skip(wire, field);
    }
    return undefined;
  } catch (e) {
    if (e instanceof Malformed) return new MalformedRequest(`malformed ${message}: ${e.message}`);
    throw e;
  }
}

/** Decodes an EnrichRequest strictly; a `MalformedRequest` says what is wrong. */
export function decodeEnrichRequest(buf: Buffer): EnrichRequestFields | MalformedRequest {
  const out: EnrichRequestFields = { records: [] };
  const bad = readFields(buf, "dnsgeo.v1.EnrichRequest", (r, field, wire) => {
    switch (field) {
      case 1:
        expectWire(wire, WIRE_LEN, "records (1)");
        out.records.push(r.string(`records[${out.records.length}]`));
        return true;
      case 2:
        expectWire(wire, WIRE_LEN, "format (2)");
        out.format = r.string("format");
        return true;
      case 3:
        expectWire(wire, WIRE_VARINT, "explode (3)");
        out.explode = r.varint("explode") !== 0;
        return true;
      case 4:
        expectWire(wire, WIRE_LEN, "id (4)");
        out.id = r.string("id");
        return true;
      default:
        return false;
    }
  });
  return bad ?? out;
}

/** Decodes a LookupRequest strictly; a `MalformedRequest` says what is wrong. */
export function decodeLookupRequest(buf: Buffer): LookupRequestFields | MalformedRequest {
  const out: LookupRequestFields = { ips: [] };
  const bad = readFields(buf, "dnsgeo.v1.LookupRequest", (r, field, wire) => {
    if (field !== 1) return false;
    expectWire(wire, WIRE_LEN, "ips (1)");
    out.ips.push(r.string(`ips[${out.ips.length}]`));
    return true;
  });
  return bad ?? out;
}

/** Bytes an answer will take on the wire, near enough to account for it before it is written. */
export function answerSizeHint(message: unknown): number {
  if (message instanceof EncodedMessage) return charsOf(message.parts);
  if (message !== null && typeof message === "object") {
    const results = (message as { results?: unknown }).results;
    if (Array.isArray(results)) {
      let n = 16;
      for (const s of results) n += typeof s === "string" ? s.length + 4 : 16;
      return n;
    }
  }
  return 64;
}
