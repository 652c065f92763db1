/**
 * snappy: raw blocks (Vector's `compression: snappy`) and the framing format,
 * decoded by a bounded decoder of our own; compressed with snappyjs.
 */
import { createRequire } from "node:module";
import { DecodeError, tooLarge } from "./decode-error.js";

interface SnappyJs {
  compress(uncompressed: Uint8Array): Uint8Array;
}
// snappyjs is CommonJS without type declarations; the one function used (compression of
// answers) is typed here. Decompression is `snappyBlock` below: snappyjs's can hang.
const snappy = createRequire(import.meta.url)("snappyjs") as SnappyJs;

const SNAPPY_STREAM_ID = Buffer.from([0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]);

export function isSnappyFramed(buf: Uint8Array): boolean {
  if (buf.length < SNAPPY_STREAM_ID.length) return false;
  for (let i = 0; i < SNAPPY_STREAM_ID.length; i++) if (buf[i] !== SNAPPY_STREAM_ID[i]) return false;
  return true;
}

export function unsnappy(buf: Buffer, max: number | undefined): Buffer {
  return isSnappyFramed(buf) ? unsnappyFramed(buf, max) : unsnappyRaw(buf, max);
}

/** Reads the raw block's varint length: [length, bytes of the varint], or undefined when malformed. */
function snappyLength(buf: Uint8Array): [number, number] | undefined {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 5 && i < buf.length; i++) {
    const c = buf[i] ?? 0;
    result += (c & 0x7f) * mul;
    if (c < 0x80) return [result, i + 1];
    mul *= 128;
  }
  return undefined;
}

// A snappy copy element yields at most 64 bytes from 2–5 input bytes, so a block
// can never expand past ~32× its size; a header claiming more is corrupt.
const SNAPPY_MAX_RATIO = 32;

function unsnappyRaw(buf: Uint8Array, max: number | undefined): Buffer {
  const header = snappyLength(buf);
  if (header === undefined || header[0] > buf.length * SNAPPY_MAX_RATIO + 16) {
    throw new DecodeError("DNSGEO_BAD_COMPRESSION", "snappy data is corrupt or truncated");
  }
  const [len, start] = header;
  if (max !== undefined && len > max) throw tooLarge(max);
  const out = snappyBlock(buf, start, len);
  if (out === undefined) throw new DecodeError("DNSGEO_BAD_COMPRESSION", "snappy data is corrupt or truncated");
  return out;
}

/**
 * Decodes the elements of a raw snappy block (from `start`, after its length varint) into exactly
 * `len` bytes; undefined when the block is malformed. Written here rather than taken
 * from snappyjs, whose decoder loops forever on some malformed input (a 4-byte literal
 * length with the top bit set turns negative and moves its read position backwards:
 * 8 bytes of request body held the event loop for good). Every step here moves forward
 * through the input and every length is checked against what is left of both buffers.
 */
function snappyBlock(buf: Uint8Array, start: number, len: number): Buffer | undefined {
  let pos = start;
  const end = buf.length;
  const out = Buffer.allocUnsafe(len);
  let o = 0;
  while (pos < end) {
    const tag = buf[pos++] as number;
    const type = tag & 3;
    if (type === 0) {
      // Literal: length - 1 in the tag, or in the 1–4 bytes after it (little-endian).
      let n = tag >>> 2;
      if (n >= 60) {
        const bytes = n - 59;
        if (pos + bytes > end) return undefined;
        n = 0;
        for (let i = bytes - 1; i >= 0; i--) n = n * 256 + (buf[pos + i] as number);
        pos += bytes;
      }
      n += 1;
      if (n > end - pos || n > len - o) return undefined;
      out.set(buf.subarray(pos, pos + n), o);
      pos += n;
      o += n;
      continue;
    }
    // Copy: `n` bytes from `offset` back in the output (they may overlap what they write).
    let n: number;
    let offset: number;
    if (type === 1) {
      if (pos >= end) return undefined;
      n = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | (buf[pos] as number);
      pos += 1;
    } else if (type === 2) {
      if (pos + 2 > end) return undefined;
      n = (tag >>> 2) + 1;
      offset = (buf[pos] as number) | ((buf[pos + 1] as number) << 8);
      pos += 2;
    } else {
      if (pos + 4 > end) return undefined;
      n = (tag >>> 2) + 1;
      offset = (buf[pos] as number) + (buf[pos + 1] as number) * 0x100 + (buf[pos + 2] as number) * 0x10000 + (buf[pos + 3] as number) * 0x1000000;
      pos += 4;
    }
    if (offset === 0 || offset > o || n > len - o) return undefined;
    for (let i = 0; i < n; i++, o++) out[o] = out[o - offset] as number;
  }
  return o === len ? out : undefined;
}

/** Snappy framing format: chunks of type(1) + length(3, LE); CRCs are not checked. */
export function unsnappyFramed(buf: Buffer, max: number | undefined): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  let pos = 0;
  const bad = (): DecodeError => new DecodeError("DNSGEO_BAD_COMPRESSION", "snappy framed data is corrupt or truncated");
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw bad();
    const type = buf[pos] ?? 0;
    const len = (buf[pos + 1] ?? 0) | ((buf[pos + 2] ?? 0) << 8) | ((buf[pos + 3] ?? 0) << 16);
    const start = pos + 4;
    const end = start + len;
    if (end > buf.length) throw bad();
    if (type === 0x00 || type === 0x01) {
      if (len < 4) throw bad();
      const data = buf.subarray(start + 4, end);
      const out = type === 0x00 ? unsnappyRaw(data, max === undefined ? undefined : max - total) : data;
      total += out.length;
      if (max !== undefined && total > max) throw tooLarge(max);
      chunks.push(out);
    } else if (type >= 0x02 && type <= 0x7f) {
      throw bad();
    }
    // 0xff stream identifier (may repeat), 0xfe padding, 0x80–0xfd skippable.
    pos = end;
  }
  return Buffer.concat(chunks, total);
}

/** A raw snappy block (what Vector's `compression: snappy` sends). */
export function snappyCompress(buf: Buffer): Buffer {
  const out = snappy.compress(buf);
  return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
