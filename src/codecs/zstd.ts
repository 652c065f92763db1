/**
 * zstd decompression with the declared sizes checked before anything is allocated
 * (fzstd does the inflating; Node < 22.15 cannot compress zstd, see compression.ts).
 */
import { Decompress as ZstdDecompress } from "fzstd";
import { DecodeError, tooLarge } from "./decode-error.js";

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

export function unzstd(buf: Buffer, max: number | undefined): Buffer {
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
