/**
 * Wire encoding of `dnsgeo.v1.EnrichResponse` straight from the pipeline's output.
 *
 * protobufjs would need every record as one string first: the ECS fast path keeps
 * a record as the pieces of its JSON text, and joining them then encoding the
 * joined string copies each byte twice more. This writes the pieces into the
 * message buffer directly. The field numbers are the proto file's; a test decodes
 * these bytes with protobufjs from the proto file and compares.
 */
import { writeItemText } from "../pipeline/decode.js";
import type { EncodableItem } from "../pipeline/types.js";
import { Utf8Writer } from "../pipeline/utf8-writer.js";

/** An EnrichResponse already in wire form; the service's serializer passes it through. */
export class EncodedMessage {
  constructor(readonly bytes: Buffer) {}
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

/** Encodes an EnrichResponse with the bytes protobufjs gives for `{records, counts, id, looked_up}`. */
export function encodeEnrichResponse(r: EnrichResponseParts): EncodedMessage {
  let chars = 64 + r.id.length;
  for (const it of r.items) {
    if (it.kind === "jsontext") for (const p of it.parts) chars += p.length;
    else chars += it.kind === "unparsed" ? it.raw.length : 256;
    chars += 4;
  }
  const w = new Utf8Writer(chars);
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
  return new EncodedMessage(w.finish());
}

/** Wraps a method's serializer so an `EncodedMessage` goes out as is. */
export function passEncoded<T>(serialize: (value: T) => Buffer): (value: T | EncodedMessage) => Buffer {
  return (value) => (value instanceof EncodedMessage ? value.bytes : serialize(value));
}
