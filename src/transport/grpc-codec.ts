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
import { writeItemText } from "../pipeline/decode.js";
import type { EncodableItem } from "../pipeline/types.js";
import { Utf8Writer } from "../pipeline/utf8-writer.js";

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

/** Writes the wire bytes; `reuse`: into the shared scratch buffer (a view valid until the next reusing call). */
function writeEnrichResponse(r: EnrichResponseParts, reuse = false): Buffer {
  let chars = 64 + r.id.length;
  for (const it of r.items) {
    if (it.kind === "jsontext") for (const p of it.parts) chars += p.length;
    else chars += it.kind === "unparsed" ? it.raw.length : 256;
    chars += 4;
  }
  const w = new Utf8Writer(chars, reuse ? scratchFor(chars) : undefined);
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
