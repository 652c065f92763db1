/**
 * Helpers shared by the per-kind parsers (parse/<kind>.ts).
 */
import * as zlib from "node:zlib";
import type { ParsedItem, RecordEnvelope } from "../types.js";

/** A plain JSON object (not an array, not null). */
export type JsonObject = Record<string, unknown>;

/** True for a non-null, non-array object. */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Callbacks envelopes use to parse what they carry, so kinds need not import parse.ts. */
export interface ParseContext {
  readonly ipFields: readonly string[];
  readonly maxDecodedBytes: number;
  /** Parses one JSON value found at envelope `depth` (`text`: its own JSON text, when known), appending to `out`. */
  value(value: unknown, depth: number, out: ParsedItem[], envelope?: RecordEnvelope, text?: string): void;
  /**
   * Parses text (one JSON document, or NDJSON lines) found at `depth`, appending to `out`;
   * false when the text held nothing but whitespace (the caller keeps what carried it).
   */
  text(text: string, depth: number, out: ParsedItem[]): boolean;
}

/** True when a base64 string starts with the gzip magic (`1f 8b 08` encodes as "H4sI"). */
export function isBase64Gzip(s: string): boolean {
  return s.length >= 8 && s.charCodeAt(0) === 0x48 && s.startsWith("H4sI");
}

/** gunzips when the bytes start with the gzip magic; undefined when corrupt or larger than `max`. */
export function maybeGunzip(bytes: Buffer, max: number): Buffer | undefined {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return zlib.gunzipSync(bytes, { maxOutputLength: max });
  } catch {
    return undefined;
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const WHITESPACE = /\s+/g;

/**
 * Strict base64 to bytes; undefined for anything else. `Buffer.from(s, "base64")`
 * never fails (it skips what it cannot read), which would turn any text into garbage.
 */
export function base64Bytes(data: string): Buffer | undefined {
  const s = data.replace(WHITESPACE, "");
  if (s.length % 4 !== 0 || !BASE64.test(s)) return undefined;
  return Buffer.from(s, "base64");
}

/**
 * Decodes base64 (of gzip, or not unless `gzipOnly`) to text; undefined when it
 * cannot be.
 */
export function base64Text(data: string, max: number, gzipOnly = false): string | undefined {
  const raw = base64Bytes(data);
  if (raw === undefined || (gzipOnly && (raw[0] !== 0x1f || raw[1] !== 0x8b))) return undefined;
  const bytes = maybeGunzip(raw, max);
  return bytes === undefined ? undefined : bytes.toString("utf8");
}

/** A string field, or undefined. */
export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}
