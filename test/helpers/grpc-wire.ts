/**
 * gRPC and protobuf bytes written by hand, for tests that talk to the server below the
 * client libraries (raw HTTP/2 streams, malformed or deliberately huge messages).
 */

/** A protobuf varint. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited protobuf field: the one-byte `key` (field number << 3 | 2), the length, the body. */
export function lenField(key: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([key]), varint(body.length), body]);
}

/** A gRPC message frame (uncompressed) around `msg`. */
export function grpcFrame(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** A dnsgeo.v1 EnrichRequest: field 1 the records, field 4 the id when given. */
export function enrichRequest(recs: readonly string[], id?: string): Buffer {
  const parts = recs.map((r) => lenField(0x0a, Buffer.from(r, "utf8")));
  if (id !== undefined) parts.push(lenField(0x22, Buffer.from(id, "utf8")));
  return Buffer.concat(parts);
}
