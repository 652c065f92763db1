/**
 * Content codings of request and answer bodies: gzip, deflate (zlib or raw), zstd and
 * snappy undone (declared by `Content-Encoding` or sniffed from magic bytes) with the
 * decoded size bounded, and the same codings applied to answers and forwarded bodies.
 * Pure functions, no I/O; only `DecodeError` is thrown.
 */
import * as zlib from "node:zlib";
import { DecodeError, tooLarge } from "./decode-error.js";
import { isSnappyFramed, snappyCompress, unsnappy, unsnappyFramed } from "./snappy.js";
import { unzstd } from "./zstd.js";

/** Options of `decompress`. */
export interface DecompressOptions {
  /** `Content-Encoding` header; may list several codings (`"deflate, gzip"`). Absent: sniffed from magic bytes. */
  contentEncoding?: string;
  /** Largest decoded body in bytes; past it `DNSGEO_BODY_TOO_LARGE` is thrown before inflating further. */
  maxDecodedBytes?: number;
}

/** Compressions `compress` can produce. */
export type Compression = "gzip" | "deflate" | "zstd" | "snappy" | "none";

/**
 * A request body with its compression undone, checked against
 * `maxDecodedBytes`. Throws as `decode` does.
 */
export function decompress(body: Buffer | Uint8Array, opts: DecompressOptions = {}): Buffer {
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

/** Bytes zlib hands over at a time while inflating a large body. */
const INFLATE_CHUNK = 256 * 1024;

/**
 * `decompress`, with a large gzip body inflated on the thread pool rather than on the
 * event loop (60 MB takes 200–400 ms). Other codings, and small bodies, as `decompress`.
 *
 * Each piece zlib hands over is copied at once into one buffer, sized from the size the
 * body announces: `zlib.gunzip` keeps the pieces and joins them at the end, one copy of
 * the whole body on the event loop (docs/reliability.md, row 5 of the abuse suite).
 */
export async function decompressAsync(body: Buffer, opts: DecompressOptions = {}): Promise<Buffer> {
  const ce = opts.contentEncoding?.trim().toLowerCase();
  const gzip = ce === "gzip" || ce === "x-gzip" || ((ce === undefined || ce === "") && body[0] === 0x1f && body[1] === 0x8b);
  if (!gzip || body.length < 64 * 1024) return decompress(body, opts);
  const max = opts.maxDecodedBytes ?? Number.MAX_SAFE_INTEGER;
  // The announced size (modulo 2^32, and a client may lie) is where the buffer starts, within
  // what deflate can reach (1 032 : 1) and `max`; it grows when it is passed.
  const announced = body.readUInt32LE(body.length - 4);
  let out = Buffer.allocUnsafe(Math.max(INFLATE_CHUNK, Math.min(announced, body.length * 1032, max)));
  let n = 0;
  return new Promise<Buffer>((resolve, reject) => {
    const inflater = zlib.createGunzip({ chunkSize: INFLATE_CHUNK });
    inflater.on("data", (piece: Buffer) => {
      if (n + piece.length > max) {
        inflater.destroy();
        reject(tooLarge(max));
        return;
      }
      if (n + piece.length > out.length) {
        const bigger = Buffer.allocUnsafe(Math.min(Math.max(out.length * 2, n + piece.length), max));
        out.copy(bigger, 0, 0, n);
        out = bigger;
      }
      piece.copy(out, n);
      n += piece.length;
    });
    inflater.on("error", (err) => reject(zlibError(err, "gzip", max)));
    inflater.on("end", () => resolve(out.subarray(0, n)));
    inflater.end(body);
  });
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
    case "snappy":
      return snappyCompress(buf);
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
