/**
 * framing: decompressed request bytes → framing (NDJSON, one JSON array, one object)
 * + JSON items, and the way back (`encodeItems`). Pure functions, no I/O.
 *
 * Any bytes split: a line that is not JSON becomes an `unparsed` item. Compression is
 * `codecs/compression.ts`; `decode` does both steps in one call.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { decompress, type DecompressOptions } from "../codecs/compression.js";
import { Utf8Writer } from "../codecs/utf8-writer.js";
import type { Decoded, DecodedItem, EncodableItem, Framing } from "./types.js";
import { parseJsonBounded } from "./json-depth.js";
import { arrayElements, trimmedSpan } from "./json-text.js";
import type { Pause } from "./slices.js";

/** Options of `decode`. */
export interface DecodeOptions extends DecompressOptions {
  /** `Content-Type` header (parameters allowed); NDJSON types force `ndjson` framing. */
  contentType?: string;
}

const NDJSON_TYPES = new Set([
  "application/x-ndjson",
  "application/ndjson",
  "application/jsonlines",
  "application/x-jsonlines",
  "application/jsonl",
  "application/json-seq",
  "application/x-json-stream",
]);

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

/** The second half of `decode`: decompressed bytes split into items (framing rules as `decode`). */
export function splitBody(raw: Buffer, contentType?: string): Decoded {
  // ASCII (nearly every log body): character offsets are byte offsets, so each
  // line's bytes can go out again by copy instead of being encoded anew.
  const ascii = isAscii(raw);
  const decoded = splitText(raw.toString("utf8"), isNdjsonType(contentType), ascii ? raw : undefined);
  if (ascii || decoded.framing !== "ndjson" || isUtf8(raw)) return decoded;
  // Not valid UTF-8: split again by bytes, so a line that is not JSON keeps its own bytes.
  const items: DecodedItem[] = [];
  let start = raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? 3 : 0;
  while (start < raw.length) start = splitByteLinesInto(items, raw, false, start, Infinity);
  return { framing: "ndjson", items };
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
          items.push(ascii ? { kind: "json", value, text: line, src: raw, at: from } : { kind: "json", value, text: line });
        } catch {
          // Bytes that are not UTF-8 became U+FFFD in `line`: the line's own bytes go out instead.
          if (ascii || isUtf8(raw.subarray(from, end))) items.push({ kind: "unparsed", raw: line });
          else items.push({ kind: "unparsed", raw: line, bytes: Buffer.from(raw.subarray(from, end)) });
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
          // Each element's own text, so its values go out as they were written.
          const spans = arrayElements(text, first);
          const items: DecodedItem[] = new Array(whole.value.length);
          for (let i = 0; i < whole.value.length; i++) {
            const span = spans[i];
            items[i] = span === undefined ? { kind: "json", value: whole.value[i] } : { kind: "json", value: whole.value[i], text: text.slice(span[0], span[1]) };
          }
          return { framing: "array", items };
        }
        if (whole.value !== null && typeof whole.value === "object") {
          const [from, to] = trimmedSpan(text);
          const item: DecodedItem = { kind: "json", value: whole.value, text: text.slice(from, to) };
          return { framing: isSingleTerminatedLine(text) ? "ndjson" : "object", items: [item] };
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
          items.push(bytes ? { kind: "json", value, text: line, src: bytes, at: from } : { kind: "json", value, text: line });
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
  if (item.text !== undefined) return item.text;
  return JSON.stringify(item.value) ?? "null";
}

function itemJson(item: EncodableItem): string {
  if (item.kind === "unparsed") return JSON.stringify(item.raw);
  if (item.kind === "jsontext") return item.parts.join("");
  if (item.text !== undefined) return item.text;
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
    else if (it.kind === "unparsed" && it.bytes !== undefined) chars += it.bytes.length;
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
  if (it.kind === "unparsed" && it.bytes !== undefined) {
    w.bytes(it.bytes);
    return;
  }
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
    else if (it.kind === "unparsed" && it.bytes !== undefined) chars += it.bytes.length;
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
