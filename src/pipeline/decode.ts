/**
 * decode: a request body (bytes) → framing + JSON items, and the way back
 * (`encodeItems`, `compress`). Pure functions, no I/O.
 *
 * Only compression and size problems throw (`DecodeError`); any uncompressed
 * bytes decode: a line that is not JSON becomes an `unparsed` item.
 */
import { isAscii } from "node:buffer";
import { createRequire } from "node:module";
import * as zlib from "node:zlib";
import { Decompress as ZstdDecompress } from "fzstd";
import type { Decoded, DecodedItem, EncodableItem, Framing } from "./types.js";
import { Utf8Writer } from "./utf8-writer.js";
import { parseJsonBounded } from "./json-depth.js";
import type { Pause } from "./slices.js";

interface SnappyJs {
  compress(uncompressed: Uint8Array): Uint8Array;
}
// snappyjs is CommonJS without type declarations; the one function used (compression of
// answers) is typed here. Decompression is `snappyBlock` below: snappyjs's can hang.
const snappy = createRequire(import.meta.url)("snappyjs") as SnappyJs;

/** Stable codes of decode errors. */
export type DecodeErrorCode =
  | "DNSGEO_UNSUPPORTED_ENCODING"
  | "DNSGEO_BODY_TOO_LARGE"
  | "DNSGEO_BAD_COMPRESSION";

/** A body that cannot be decompressed, or decompresses past the size limit. */
export class DecodeError extends Error {
  readonly code: DecodeErrorCode;
  constructor(code: DecodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DecodeError";
    this.code = code;
  }
}

/** Options of `decode`. */
export interface DecodeOptions {
  /** `Content-Type` header (parameters allowed); NDJSON types force `ndjson` framing. */
  contentType?: string;
  /** `Content-Encoding` header; may list several codings (`"deflate, gzip"`). Absent: sniffed from magic bytes. */
  contentEncoding?: string;
  /** Largest decoded body in bytes; past it `DNSGEO_BODY_TOO_LARGE` is thrown before inflating further. */
  maxDecodedBytes?: number;
}

/** Compressions `compress` can produce. */
export type Compression = "gzip" | "deflate" | "zstd" | "snappy" | "none";

const NDJSON_TYPES = new Set([
  "application/x-ndjson",
  "application/ndjson",
  "application/jsonlines",
  "application/x-jsonlines",
  "application/jsonl",
  "application/json-seq",
  "application/x-json-stream",
]);

const SNAPPY_STREAM_ID = Buffer.from([0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]);

/**
 * Decompresses and splits a body into JSON items.
 *
 * Framing: an NDJSON content type forces `ndjson`; otherwise a body that is one
 * JSON array → `array`, one JSON object → `object` (but a single line ending in
 * `\n` stays `ndjson`, as Fluent Bit's `json_lines` sends it), anything else →
 * `ndjson` line by line, so one bad line never fails the others.
 *
 * @throws DecodeError on an unknown `Content-Encoding`, corrupt or truncated
 *   compressed data, or decoded output past `maxDecodedBytes`.
 */
export function decode(body: Buffer | Uint8Array, opts: DecodeOptions = {}): Decoded {
  return splitBody(decompress(body, opts), opts.contentType);
}

/**
 * The first half of `decode`: the body with its compression undone, checked against
 * `maxDecodedBytes`. Throws as `decode` does.
 */
export function decompress(body: Buffer | Uint8Array, opts: DecodeOptions = {}): Buffer {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const max = opts.maxDecodedBytes;
  const raw = opts.contentEncoding !== undefined && opts.contentEncoding.trim() !== ""
    ? decodeDeclared(buf, opts.contentEncoding, max)
    : decodeSniffed(buf, max);
  if (max !== undefined && raw.length > max) {
    throw tooLarge(max);
  }
  return raw;
}

/**
 * `decompress`, with a large gzip body inflated on the thread pool rather than on the
 * event loop (60 MB takes 200–400 ms). Other codings, and small bodies, as `decompress`.
 */
export async function decompressAsync(body: Buffer, opts: DecodeOptions = {}): Promise<Buffer> {
  const ce = opts.contentEncoding?.trim().toLowerCase();
  const gzip = ce === "gzip" || ce === "x-gzip" || ((ce === undefined || ce === "") && body[0] === 0x1f && body[1] === 0x8b);
  if (!gzip || body.length < 64 * 1024) return decompress(body, opts);
  const max = opts.maxDecodedBytes;
  const raw = await new Promise<Buffer>((resolve, reject) =>
    zlib.gunzip(body, zlibOpts(max), (err, out) => (err ? reject(zlibError(err, "gzip", max)) : resolve(out))),
  );
  if (max !== undefined && raw.length > max) throw tooLarge(max);
  return raw;
}

/**
 * The decoded size a gzip body announces (its trailer's ISIZE: the size modulo 2^32 of
 * its last member), capped at `max`; undefined when the body is not gzip. A client can
 * announce anything, so this only lets a body be refused before it is inflated; the
 * inflated size is what counts after.
 */
export function gzipSizeHint(body: Buffer, contentEncoding: string | undefined, max: number): number | undefined {
  const ce = contentEncoding?.trim().toLowerCase();
  const gzip = ce === "gzip" || ce === "x-gzip" || ((ce === undefined || ce === "") && body[0] === 0x1f && body[1] === 0x8b);
  if (!gzip || body.length < 18) return undefined;
  return Math.min(body.readUInt32LE(body.length - 4), max);
}

/** The second half of `decode`: decompressed bytes split into items (framing rules as `decode`). */
export function splitBody(raw: Buffer, contentType?: string): Decoded {
  // ASCII (nearly every log body): character offsets are byte offsets, so each
  // line's bytes can go out again by copy instead of being encoded anew.
  return splitText(raw.toString("utf8"), isNdjsonType(contentType), isAscii(raw) ? raw : undefined);
}

/**
 * `splitBody` for large bodies: NDJSON lines are parsed in slices, with `pause` awaited
 * whenever it says the current slice has run long enough, so one large batch does not
 * hold the event loop for its whole parse. A body that is one JSON array or object is
 * still parsed in one piece.
 */
export async function splitBodySliced(raw: Buffer, contentType: string | undefined, pause: Pause): Promise<Decoded> {
  if (!isNdjsonType(contentType)) {
    // Only the start is turned into text to choose the framing: the whole body at once
    // is a long run of its own (and needed only for one JSON document).
    const headText = raw.toString("utf8", 0, Math.min(raw.length, 64 * 1024));
    const head = headText.charCodeAt(0) === 0xfeff ? headText.slice(1) : headText;
    const first = firstNonWhitespace(head);
    const c = first === -1 ? -1 : head.charCodeAt(first);
    // A body whose second line starts another value is NDJSON: no whole-body parse attempt.
    if ((c === 0x5b || c === 0x7b) && !looksLikeNdjson(head, first)) return splitBody(raw);
  }
  const bytes = isAscii(raw) ? raw : undefined;
  const items: DecodedItem[] = [];
  let start = raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? 3 : 0;
  while (start < raw.length) {
    start = splitByteLinesInto(items, raw, bytes !== undefined, start, 256);
    if (pause.isDue()) await pause.due();
  }
  return { framing: "ndjson", items };
}

/**
 * `splitLinesInto` over bytes: each line is made text on its own (a line never splits a
 * UTF-8 sequence, since 0x0A is never part of one). `ascii`: the body is ASCII, so each
 * line's bytes can be copied into the answer (its `at` is a byte offset in `raw`).
 */
function splitByteLinesInto(items: DecodedItem[], raw: Buffer, ascii: boolean, start: number, maxLines: number): number {
  let lines = 0;
  while (start < raw.length && lines++ < maxLines) {
    let nl = raw.indexOf(0x0a, start);
    if (nl === -1) nl = raw.length;
    let end = nl;
    if (end > start && raw[end - 1] === 0x0d) end--;
    if (end > start) {
      let from = start;
      if (raw[from] === 0x1e) from++;
      const line = raw.toString(ascii ? "latin1" : "utf8", from, end);
      if (!isBlank(line)) {
        try {
          const value = parseJsonBounded(line);
          if (value !== null && typeof value === "object" && !Array.isArray(value)) {
            items.push(ascii ? { kind: "json", value, text: line, src: raw, at: from } : { kind: "json", value, text: line });
          } else items.push({ kind: "json", value });
        } catch {
          items.push({ kind: "unparsed", raw: line });
        }
      }
    }
    start = nl + 1;
  }
  return start;
}

/** True when the value starting at `first` ends at a line end and another value starts on the next line. */
function looksLikeNdjson(text: string, first: number): boolean {
  const nl = text.indexOf("\n", first);
  if (nl === -1) return false;
  let i = nl - 1;
  while (i > first && (text.charCodeAt(i) === 0x0d || text.charCodeAt(i) === 0x20 || text.charCodeAt(i) === 0x09)) i--;
  const endC = text.charCodeAt(i);
  if (endC !== 0x7d && endC !== 0x5d) return false;
  let j = nl + 1;
  while (j < text.length && (text.charCodeAt(j) === 0x20 || text.charCodeAt(j) === 0x09 || text.charCodeAt(j) === 0x0d || text.charCodeAt(j) === 0x0a)) j++;
  if (j >= text.length || text.charCodeAt(j) !== 0x7b) return false;
  // The first line alone must be a value, or the body is one pretty-printed document.
  try {
    JSON.parse(text.slice(first, nl));
    return true;
  } catch {
    return false;
  }
}

function isNdjsonType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(";");
  const mime = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return NDJSON_TYPES.has(mime);
}

function decodeDeclared(buf: Buffer, header: string, max: number | undefined): Buffer {
  // Codings are listed in the order they were applied; undo them last first.
  const codings = header.split(",");
  let out = buf;
  for (let i = codings.length - 1; i >= 0; i--) {
    const coding = (codings[i] ?? "").trim().toLowerCase();
    switch (coding) {
      case "":
      case "identity":
      case "none":
        break;
      case "gzip":
      case "x-gzip":
        out = gunzip(out, max);
        break;
      case "deflate":
      case "zlib":
        out = inflate(out, max);
        break;
      case "zstd":
        out = unzstd(out, max);
        break;
      case "snappy":
      case "x-snappy-framed":
        out = unsnappy(out, max);
        break;
      default:
        // A header value is the client's to choose (16 KB ones were seen): the message, answered and logged, carries its start only.
        throw new DecodeError("DNSGEO_UNSUPPORTED_ENCODING", `unsupported Content-Encoding "${coding.length > 40 ? `${coding.slice(0, 40)}…" (${coding.length} characters)` : `${coding}"`}`);
    }
  }
  return out;
}

/**
 * The compression a body's first bytes announce (gzip, zstd, framed snappy,
 * zlib), for bodies that come without `Content-Encoding` (files, stdin).
 * "zlib" is only a guess: `x^` and `xÚ` can also start plain text.
 */
export function sniffCompression(buf: Uint8Array): "gzip" | "zstd" | "snappy" | "zlib" | undefined {
  const b0 = buf[0];
  const b1 = buf[1];
  if (b0 === 0x1f && b1 === 0x8b) return "gzip";
  if (b0 === 0x28 && b1 === 0xb5 && buf[2] === 0x2f && buf[3] === 0xfd) return "zstd";
  if (b0 === 0xff && isSnappyFramed(buf)) return "snappy";
  if (b0 === 0x78 && (b1 === 0x01 || b1 === 0x5e || b1 === 0x9c || b1 === 0xda)) return "zlib";
  return undefined;
}

function decodeSniffed(buf: Buffer, max: number | undefined): Buffer {
  switch (sniffCompression(buf)) {
    case "gzip":
      return gunzip(buf, max);
    case "zstd":
      return unzstd(buf, max);
    case "snappy":
      return unsnappyFramed(buf, max);
    case "zlib":
      // If it does not inflate it was text.
      try {
        return inflateZlib(buf, max);
      } catch (err) {
        if (err instanceof DecodeError && err.code === "DNSGEO_BODY_TOO_LARGE") throw err;
        return buf;
      }
    default:
      return buf;
  }
}

function tooLarge(max: number): DecodeError {
  return new DecodeError("DNSGEO_BODY_TOO_LARGE", `decoded body is larger than ${max} bytes`);
}

function zlibError(err: unknown, what: string, max: number | undefined): DecodeError {
  if (max !== undefined && (err as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") return tooLarge(max);
  return new DecodeError("DNSGEO_BAD_COMPRESSION", `${what} data is corrupt or truncated`, { cause: err });
}

function zlibOpts(max: number | undefined): zlib.ZlibOptions {
  // maxOutputLength makes zlib stop inflating as soon as the limit is passed.
  return max === undefined ? {} : { maxOutputLength: Math.max(1, max) };
}

function gunzip(buf: Buffer, max: number | undefined): Buffer {
  try {
    return zlib.gunzipSync(buf, zlibOpts(max));
  } catch (err) {
    throw zlibError(err, "gzip", max);
  }
}

function inflateZlib(buf: Buffer, max: number | undefined): Buffer {
  try {
    return zlib.inflateSync(buf, zlibOpts(max));
  } catch (err) {
    throw zlibError(err, "deflate", max);
  }
}

function inflate(buf: Buffer, max: number | undefined): Buffer {
  try {
    return inflateZlib(buf, max);
  } catch (err) {
    if (err instanceof DecodeError && err.code === "DNSGEO_BODY_TOO_LARGE") throw err;
    // Some clients send raw deflate under "deflate" (RFC 9110 says zlib-wrapped).
    try {
      return zlib.inflateRawSync(buf, zlibOpts(max));
    } catch (rawErr) {
      throw zlibError(rawErr, "deflate", max);
    }
  }
}

interface ZstdScan {
  contentSize: number;
  maxWindow: number;
}

/**
 * Walks zstd frame and block headers (cheap: no decompression) so an absurd
 * declared size or window is refused before fzstd allocates for it.
 */
function scanZstd(buf: Buffer): ZstdScan {
  let pos = 0;
  let contentSize = 0;
  let maxWindow = 0;
  const bad = (): DecodeError => new DecodeError("DNSGEO_BAD_COMPRESSION", "zstd data is corrupt or truncated");
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw bad();
    const magic = buf.readUInt32LE(pos);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      if (pos + 8 > buf.length) throw bad();
      pos += 8 + buf.readUInt32LE(pos + 4);
      continue;
    }
    if (magic !== 0xfd2fb528) throw bad();
    const fhd = buf[pos + 4];
    if (fhd === undefined) throw bad();
    const fcsFlag = fhd >> 6;
    const single = (fhd >> 5) & 1;
    const checksum = (fhd >> 2) & 1;
    const dictBytes = [0, 1, 2, 4][fhd & 3] ?? 0;
    let p = pos + 5;
    let window = 0;
    if (!single) {
      const wd = buf[p];
      if (wd === undefined) throw bad();
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
      p += 1;
    }
    p += dictBytes;
    const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
    if (p + fcsBytes > buf.length) throw bad();
    let fcs = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + (buf[p + i] ?? 0);
    if (fcsFlag === 1) fcs += 256;
    p += fcsBytes;
    if (single) window = fcs;
    if (window > maxWindow) maxWindow = window;
    contentSize += fcs;
    for (;;) {
      if (p + 3 > buf.length) throw bad();
      const hdr = (buf[p] ?? 0) | ((buf[p + 1] ?? 0) << 8) | ((buf[p + 2] ?? 0) << 16);
      const type = (hdr >> 1) & 3;
      if (type === 3) throw bad();
      p += 3 + (type === 1 ? 1 : hdr >>> 3);
      if (hdr & 1) break;
    }
    p += checksum * 4;
    if (p > buf.length) throw bad();
    pos = p;
  }
  return { contentSize, maxWindow };
}

const ZSTD_WINDOW_FLOOR = 8 * 1024 * 1024;

function unzstd(buf: Buffer, max: number | undefined): Buffer {
  const scan = scanZstd(buf);
  if (max !== undefined) {
    if (scan.contentSize > max) throw tooLarge(max);
    if (scan.maxWindow > Math.max(max, ZSTD_WINDOW_FLOOR)) throw tooLarge(max);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const limit = max ?? Infinity;
  const stream = new ZstdDecompress((data) => {
    total += data.length;
    // Throwing here stops fzstd mid-stream: the rest is never inflated.
    if (total > limit) throw tooLarge(limit);
    if (data.length > 0) chunks.push(data);
  });
  try {
    stream.push(buf, true);
  } catch (err) {
    if (err instanceof DecodeError) throw err;
    throw new DecodeError("DNSGEO_BAD_COMPRESSION", "zstd data is corrupt or truncated", { cause: err });
  }
  return Buffer.concat(chunks, total);
}

function isSnappyFramed(buf: Uint8Array): boolean {
  if (buf.length < SNAPPY_STREAM_ID.length) return false;
  for (let i = 0; i < SNAPPY_STREAM_ID.length; i++) if (buf[i] !== SNAPPY_STREAM_ID[i]) return false;
  return true;
}

function unsnappy(buf: Buffer, max: number | undefined): Buffer {
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
function unsnappyFramed(buf: Buffer, max: number | undefined): Buffer {
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

function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a && c !== 0x1e) return false;
  }
  return true;
}

function firstNonWhitespace(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return i;
  }
  return -1;
}

function tryParse(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: parseJsonBounded(text) };
  } catch {
    return { ok: false };
  }
}

/** Exactly one non-blank line, and the body ends with a newline (Fluent Bit `json_lines`). */
function isSingleTerminatedLine(text: string): boolean {
  const end = text.length - 1;
  if (text.charCodeAt(end) !== 0x0a) return false;
  const nl = text.indexOf("\n");
  return nl === end || isBlank(text.slice(nl + 1));
}

function splitText(input: string, forceNdjson: boolean, asciiBytes?: Buffer): Decoded {
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  if (!forceNdjson) {
    const first = firstNonWhitespace(text);
    const c = first === -1 ? -1 : text.charCodeAt(first);
    if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      const whole = tryParse(text);
      if (whole.ok) {
        if (Array.isArray(whole.value)) {
          const items: DecodedItem[] = new Array(whole.value.length);
          for (let i = 0; i < whole.value.length; i++) items[i] = { kind: "json", value: whole.value[i] };
          return { framing: "array", items };
        }
        if (whole.value !== null && typeof whole.value === "object") {
          if (isSingleTerminatedLine(text)) return { framing: "ndjson", items: [{ kind: "json", value: whole.value }] };
          return { framing: "object", items: [{ kind: "json", value: whole.value }] };
        }
      }
    }
  }
  return { framing: "ndjson", items: splitLines(text, asciiBytes) };
}

/** `bytes`: the same text as ASCII bytes (offsets align), when it is ASCII. */
function splitLines(text: string, bytes?: Buffer): DecodedItem[] {
  const items: DecodedItem[] = [];
  splitLinesInto(items, text, bytes, 0, Infinity);
  return items;
}

/** Appends the items of up to `maxLines` lines from `start`; returns where the next line starts. */
function splitLinesInto(items: DecodedItem[], text: string, bytes: Buffer | undefined, start: number, maxLines: number): number {
  let lines = 0;
  while (start < text.length && lines++ < maxLines) {
    let nl = text.indexOf("\n", start);
    if (nl === -1) nl = text.length;
    let end = nl;
    if (end > start && text.charCodeAt(end - 1) === 0x0d) end--;
    if (end > start) {
      let from = start;
      // RFC 7464 json-seq puts a record separator before each value.
      if (text.charCodeAt(from) === 0x1e) from++;
      const line = text.slice(from, end);
      if (!isBlank(line)) {
        try {
          const value = parseJsonBounded(line);
          if (value !== null && typeof value === "object" && !Array.isArray(value)) {
            items.push(bytes ? { kind: "json", value, text: line, src: bytes, at: from } : { kind: "json", value, text: line });
          } else items.push({ kind: "json", value });
        } catch {
          items.push({ kind: "unparsed", raw: line });
        }
      }
    }
    start = nl + 1;
  }
  return start;
}

function itemText(item: EncodableItem): string {
  if (item.kind === "unparsed") return item.raw;
  if (item.kind === "jsontext") return item.parts.join("");
  return JSON.stringify(item.value) ?? "null";
}

function itemJson(item: EncodableItem): string {
  if (item.kind === "unparsed") return JSON.stringify(item.raw);
  if (item.kind === "jsontext") return item.parts.join("");
  return JSON.stringify(item.value) ?? "null";
}

/**
 * Items as newline-terminated lines in one buffer. Each string (each piece of
 * a JsonText) is UTF-8 encoded straight into place.
 */
function linesToBuffer(items: readonly EncodableItem[], into?: (bytes: number) => Buffer | undefined): Buffer {
  // Sized first; the text of an item that is not JsonText is made once, here, and kept for the write.
  const texts: Array<string | undefined> = new Array(items.length);
  let chars = 0;
  for (let i = 0; i < items.length; i++) {
    const it = items[i] as EncodableItem;
    if (it.kind === "jsontext") for (const p of it.parts) chars += p.length;
    else chars += (texts[i] = itemText(it)).length;
    chars++;
  }
  // ASCII (the usual case) fits exactly; wider text grows the buffer.
  const w = new Utf8Writer(chars, into?.(chars));
  for (let i = 0; i < items.length; i++) {
    const text = texts[i];
    if (text !== undefined) w.str(text);
    else writeItemText(w, items[i] as EncodableItem);
    w.byte(0x0a);
  }
  return w.finish();
}

/** Writes one item's text (as `itemText` would return it) into `w`. */
export function writeItemText(w: Utf8Writer, it: EncodableItem): void {
  if (it.kind !== "jsontext") {
    w.str(itemText(it));
    return;
  }
  const parts = it.parts;
  if (parts.length === 0) return;
  // parts[0], the record's own text, goes in as it is: copied from the request bytes when known.
  if (it.headSrc !== undefined) {
    const at = it.headAt ?? 0;
    w.copy(it.headSrc, at, at + (parts[0] as string).length);
  } else w.str(parts[0] as string);
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i] as string | Buffer;
    if (typeof p === "string") w.str(p);
    else w.bytes(p);
  }
}

/**
 * Serialises items in a framing (the response uses the request's framing).
 *
 * - `ndjson`: one line per item, every line ending in `\n`; unparsed lines go out unchanged.
 * - `array`: `[v1,v2,…]`; an unparsed line (which cannot come from an array body) is written as a JSON string.
 * - `object`: exactly one item → that value alone. Zero or several items (an
 *   envelope expanded into many records, or a control message into none) → a JSON
 *   array, since one object cannot hold them and `application/json` readers
 *   (Fluent Bit `in_http`, Vector `http_server`) accept an array too.
 *
 * `into`, when given, is asked once for a buffer of at least the bytes an NDJSON body
 * needs (ASCII: exactly); the body is then written into it (see OutputBuffers).
 */
export function encodeItems(framing: Framing, items: readonly EncodableItem[], into?: (bytes: number) => Buffer | undefined): Buffer {
  if (framing === "ndjson") {
    if (items.length === 0) return Buffer.alloc(0);
    return linesToBuffer(items, into);
  }
  if (framing === "object" && items.length === 1) {
    return Buffer.from(itemJson(items[0] as EncodableItem), "utf8");
  }
  const parts = new Array<string>(items.length);
  for (let i = 0; i < items.length; i++) parts[i] = itemJson(items[i] as EncodableItem);
  return Buffer.from("[" + parts.join(",") + "]", "utf8");
}

/**
 * `encodeItems` for large answers: an NDJSON body is sized and written in slices,
 * with `pause` awaited between them. Other framings are written in one piece.
 */
export async function encodeItemsSliced(framing: Framing, items: readonly EncodableItem[], pause: Pause, into?: (bytes: number) => Buffer | undefined): Promise<Buffer> {
  if (framing !== "ndjson" || items.length === 0) return encodeItems(framing, items, into);
  const texts: Array<string | undefined> = new Array(items.length);
  let chars = 0;
  for (let i = 0; i < items.length; i++) {
    const it = items[i] as EncodableItem;
    if (it.kind === "jsontext") for (const p of it.parts) chars += p.length;
    else chars += (texts[i] = itemText(it)).length;
    chars++;
    if ((i & 255) === 255 && pause.isDue()) await pause.due();
  }
  const w = new Utf8Writer(chars, into?.(chars));
  for (let i = 0; i < items.length; i++) {
    const text = texts[i];
    if (text !== undefined) w.str(text);
    else writeItemText(w, items[i] as EncodableItem);
    w.byte(0x0a);
    if ((i & 255) === 255 && pause.isDue()) await pause.due();
  }
  return w.finish();
}

/**
 * Serialises JSON values in a framing; see `encodeItems` for the rules.
 * `unparsed` lines (ndjson only) are appended after the values, unchanged.
 */
export function encode(framing: Framing, values: readonly unknown[], unparsed?: readonly string[]): Buffer {
  const items: DecodedItem[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) items[i] = { kind: "json", value: values[i] };
  if (unparsed !== undefined) for (const raw of unparsed) items.push({ kind: "unparsed", raw });
  return encodeItems(framing, items);
}

/** `compress`, with gzip and deflate run on the thread pool (a 140 MB answer takes about a second to gzip). */
export async function compressAsync(buf: Buffer, encoding: Compression): Promise<Buffer> {
  if (encoding !== "gzip" && encoding !== "deflate") return compress(buf, encoding);
  const run = encoding === "gzip" ? zlib.gzip : zlib.deflate;
  return new Promise((resolve, reject) => run(buf, (err, out) => (err ? reject(err) : resolve(out))));
}

type ZstdCompressSync = (buf: Buffer) => Buffer;

/** Whether this Node.js can compress zstd (22.15+); every version here can decompress it. */
export const canCompressZstd = typeof (zlib as unknown as { zstdCompressSync?: unknown }).zstdCompressSync === "function";

/**
 * Compresses a body for a response or a forward target.
 * gzip and deflate (zlib-wrapped, as HTTP means it) via node:zlib; snappy as a raw
 * block (what Vector's `compression: snappy` sends). zstd needs a Node with
 * `zlib.zstdCompressSync` (22.15+); on older Node it throws
 * `DNSGEO_UNSUPPORTED_ENCODING` (fzstd only decompresses).
 */
export function compress(buf: Buffer, encoding: Compression): Buffer {
  switch (encoding) {
    case "none":
      return buf;
    case "gzip":
      return zlib.gzipSync(buf);
    case "deflate":
      return zlib.deflateSync(buf);
    case "snappy": {
      const out = snappy.compress(buf);
      return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    case "zstd": {
      const zstdCompressSync = (zlib as unknown as { zstdCompressSync?: ZstdCompressSync }).zstdCompressSync;
      if (zstdCompressSync === undefined) {
        throw new DecodeError(
          "DNSGEO_UNSUPPORTED_ENCODING",
          "zstd compression needs Node 22.15 or later; on this Node zstd is decoded only",
        );
      }
      return zstdCompressSync(buf);
    }
    default:
      throw new DecodeError("DNSGEO_UNSUPPORTED_ENCODING", `unsupported compression "${String(encoding)}"`);
  }
}
