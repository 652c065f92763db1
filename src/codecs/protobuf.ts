/**
 * Protobuf wire format by hand, for the gRPC messages written and read on the hot path
 * (`transport/grpc-codec.ts`): a strict reader, and a writer that UTF-8 encodes the
 * pieces of records straight into a length-delimited field.
 */
import { isUtf8 } from "node:buffer";
import { Utf8Writer } from "./utf8-writer.js";

/** `Utf8Writer` with protobuf's varints and length-delimited fields. */
export class ProtoWriter extends Utf8Writer {
  /** Appends an unsigned varint (protobuf base-128), `n` < 2^53. */
  varint(n: number): void {
    this.ensure(10);
    this.putVarint(n);
  }

  /** Writes a varint at `off` into space already there (no growing). */
  private putVarint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.off++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.off++] = n;
  }

  /**
   * Writes a length-delimited field (protobuf wire type 2) whose body `body` writes:
   * reserves the widest length prefix, then moves the body down to sit right after
   * the real (shortest) prefix, as protobuf requires.
   */
  delimited(body: () => void): void {
    const RESERVE = 5; // lengths < 2^35
    this.ensure(RESERVE);
    const lenAt = this.off;
    this.off += RESERVE;
    body();
    const len = this.off - lenAt - RESERVE;
    let prefix = 1;
    for (let v = len; v >= 0x80; v = Math.floor(v / 0x80)) prefix++;
    if (prefix < RESERVE) this.buf.copyWithin(lenAt + prefix, lenAt + RESERVE, this.off);
    const end = this.off - (RESERVE - prefix);
    // Into the reserved bytes: growing here would copy only what lies before them.
    this.off = lenAt;
    this.putVarint(len);
    this.off = end;
  }
}

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** A message that breaks the wire format; its text says where. */
export class Malformed extends Error {}

/**
 * A strict protobuf reader: wire types are checked against the field, lengths against
 * the bytes left, strings for valid UTF-8 (proto3 requires it), so a truncated or
 * corrupt message is refused instead of read as garbage. protobufjs's decoder reads a
 * field with the wrong wire type as if it had the right one.
 */
export class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(what: string): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Malformed(`${what}: truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++] as number;
      // Values above 2^53 lose precision; every field read here is a tag, a length or a bool.
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new Malformed(`${what}: varint longer than 10 bytes at byte ${this.pos}`);
  }

  bytes(what: string): [number, number] {
    const len = this.varint(what);
    const start = this.pos;
    if (len > this.buf.length - start) throw new Malformed(`${what}: length ${len} runs past the end of the message (${this.buf.length - start} bytes left)`);
    this.pos = start + len;
    return [start, this.pos];
  }

  string(what: string): string {
    const [start, end] = this.bytes(what);
    const view = this.buf.subarray(start, end);
    if (!isUtf8(view)) throw new Malformed(`${what} is not valid UTF-8`);
    return view.toString("utf8");
  }

  skip(wire: number, field: number): void {
    const what = `field ${field}`;
    switch (wire) {
      case WIRE_VARINT:
        this.varint(what);
        return;
      case WIRE_I64:
      case WIRE_I32: {
        const n = wire === WIRE_I64 ? 8 : 4;
        if (this.buf.length - this.pos < n) throw new Malformed(`${what}: truncated fixed-size value`);
        this.pos += n;
        return;
      }
      case WIRE_LEN:
        this.bytes(what);
        return;
      default:
        throw new Malformed(`${what}: wire type ${wire} is not allowed (groups are not used by this service)`);
    }
  }
}

export function expectWire(wire: number, want: number, name: string): void {
  if (wire !== want) throw new Malformed(`field ${name} has wire type ${wire}, expected ${want}`);
}
