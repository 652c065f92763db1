/**
 * Lossless output: a record's own JSON text with dnsgeo's fields spliced in.
 *
 * `JSON.parse` + `JSON.stringify` changes what a user sent: integers beyond 2^53 lose
 * digits, `119.0` becomes `119`, `7.6967E7` `76967000`, `-0` `0`, `1e400` `null`, and
 * escapes are respelled. dnsgeo never writes an original value from the parsed object:
 * the output is built from the record's source text, with every original member copied
 * as it came (key spelling, number spelling, escapes, duplicates) and only dnsgeo's own
 * members written anew. The parsed object is used to decide *what* to add; this module
 * only decides where the bytes go.
 *
 * The scanner assumes text that `JSON.parse` accepted (it is only called on such text),
 * so it tracks strings and brackets and nothing else.
 */
import { isPlain } from "./plain-object.js";

type Obj = Record<string, unknown>;

/** Index of the first non-whitespace character at or after `i` (JSON whitespace only). */
export function skipWs(text: string, i: number): number {
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
  }
  return i;
}

/** Index just past the string starting at `i` (a `"`). */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x5c /* \ */) j++;
    else if (c === 0x22 /* " */) return j + 1;
  }
  return text.length;
}

/** Index just past the JSON value starting at `i` (no leading whitespace). */
export function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return stringEnd(text, i);
  if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === 0x22) j = stringEnd(text, j) - 1;
      else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        if (--depth === 0) return j + 1;
      }
    }
    return text.length;
  }
  // A number or a literal: up to the next delimiter.
  let j = i + 1;
  for (; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break;
  }
  return j;
}

/** One member of an object's text. */
export interface MemberSpan {
  /** The key as `JSON.parse` reads it. */
  key: string;
  keyStart: number;
  keyEnd: number;
  valueStart: number;
  valueEnd: number;
}

/** The members of the object whose `{` is at `start`, in text order; `close` is its `}`. */
export function objectMembers(text: string, start: number): { members: MemberSpan[]; close: number } {
  const members: MemberSpan[] = [];
  let i = skipWs(text, start + 1);
  if (text.charCodeAt(i) === 0x7d) return { members, close: i };
  while (i < text.length) {
    const keyStart = i;
    const keyEnd = stringEnd(text, i);
    const raw = text.slice(keyStart + 1, keyEnd - 1);
    const key = raw.indexOf("\\") === -1 ? raw : (JSON.parse(text.slice(keyStart, keyEnd)) as string);
    i = skipWs(text, keyEnd);
    i = skipWs(text, i + 1); // the colon
    const valueStart = i;
    const vEnd = valueEnd(text, i);
    members.push({ key, keyStart, keyEnd, valueStart, valueEnd: vEnd });
    i = skipWs(text, vEnd);
    if (text.charCodeAt(i) === 0x7d) return { members, close: i };
    i = skipWs(text, i + 1); // the comma
  }
  return { members, close: text.length - 1 };
}

/** `[start, end)` of each element of the array whose `[` is at `start`. */
export function arrayElements(text: string, start: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let i = skipWs(text, start + 1);
  if (text.charCodeAt(i) === 0x5d) return out;
  while (i < text.length) {
    const end = valueEnd(text, i);
    out.push([i, end]);
    i = skipWs(text, end);
    if (text.charCodeAt(i) !== 0x2c) return out;
    i = skipWs(text, i + 1);
  }
  return out;
}

/** `[start, end)` of the one JSON value in `text` (leading and trailing whitespace left out). */
export function trimmedSpan(text: string): [number, number] {
  const start = skipWs(text, 0);
  let end = text.length;
  while (end > start) {
    const c = text.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    end--;
  }
  return [start, end];
}

/**
 * The text of the value at `path` (object keys and array indices) inside the value
 * `text[start, end)`, or undefined when there is none. With duplicate keys the last
 * one counts, as in `JSON.parse`.
 */
export function textAt(text: string, start: number, path: readonly (string | number)[]): string | undefined {
  let i = skipWs(text, start);
  for (const step of path) {
    const c = text.charCodeAt(i);
    if (typeof step === "number") {
      if (c !== 0x5b) return undefined;
      const el = arrayElements(text, i)[step];
      if (el === undefined) return undefined;
      i = el[0];
    } else {
      if (c !== 0x7b) return undefined;
      let found: MemberSpan | undefined;
      for (const m of objectMembers(text, i).members) if (m.key === step) found = m;
      if (found === undefined) return undefined;
      i = found.valueStart;
    }
  }
  return text.slice(i, valueEnd(text, i));
}

const hasOwn = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/**
 * JSON text of `out`, an object derived from `orig` by adding keys (anywhere), replacing
 * a key's value (its old value moved to `<key>_original` when `out` has that key and
 * `orig` did not), copying nested objects to add keys into them and arrays to append
 * elements to them; `text[start, end)`
 * is `orig`'s own text. Every member of `orig` that `out` still holds is copied from the
 * text as it came; only what dnsgeo made is serialized.
 */
export function mergedText(text: string, start: number, end: number, orig: Obj, out: Obj): string {
  let changed: Set<string> | undefined;
  for (const k in orig) {
    if (hasOwn(orig, k) && out[k] !== orig[k]) (changed ??= new Set()).add(k);
  }
  const open = skipWs(text, start);
  if (changed === undefined) {
    // Only additions: the text up to its `}`, then the new members.
    let close = end - 1;
    while (close > open && text.charCodeAt(close) !== 0x7d) close--;
    let last = close - 1;
    while (last > open && isWs(text.charCodeAt(last))) last--;
    const empty = last === open;
    const added = addedMembers(orig, out, undefined);
    if (added === "") return text.slice(open, close + 1);
    return text.slice(open, last + 1) + (empty ? "" : ",") + added + "}";
  }
  const { members } = objectMembers(text, open);
  const lastIndex = new Map<string, number>();
  for (let m = 0; m < members.length; m++) lastIndex.set((members[m] as MemberSpan).key, m);
  const emitted = new Set<string>();
  let s = "{";
  let sep = "";
  for (let m = 0; m < members.length; m++) {
    const mem = members[m] as MemberSpan;
    const k = mem.key;
    if (!changed.has(k)) {
      s += sep + text.slice(mem.keyStart, mem.valueEnd);
      sep = ",";
      continue;
    }
    if (lastIndex.get(k) !== m) continue; // an earlier duplicate of a replaced key: JSON.parse never saw it
    const ov = orig[k];
    const nv = out[k];
    const moved = `${k}_original`;
    if (!hasOwn(orig, moved) && hasOwn(out, moved) && out[moved] === ov) {
      // Replaced: the record's own value keeps its text under `<key>_original`; the new one is appended.
      s += sep + JSON.stringify(moved) + ":" + text.slice(mem.valueStart, mem.valueEnd);
      sep = ",";
      emitted.add(moved);
      continue;
    }
    if (isPlain(ov) && isPlain(nv) && derived(ov, nv)) {
      s += sep + text.slice(mem.keyStart, mem.keyEnd) + ":" + mergedText(text, mem.valueStart, mem.valueEnd, ov, nv);
      sep = ",";
      emitted.add(k);
      continue;
    }
    if (Array.isArray(ov) && Array.isArray(nv) && extends_(ov, nv)) {
      // The record's array with dnsgeo's elements after its own (OCSF `enrichments`).
      s += sep + text.slice(mem.keyStart, mem.keyEnd) + ":" + appendedArray(text, mem.valueStart, mem.valueEnd, nv.slice(ov.length));
      sep = ",";
      emitted.add(k);
      continue;
    }
    // Anything else was replaced outright: the new value is appended below.
  }
  const added = addedMembers(orig, out, emitted);
  if (added !== "") s += sep + added;
  return s + "}";
}

/** `"k":value` for each key of `out` that is new or replaced (not in `emitted`), comma-joined. */
function addedMembers(orig: Obj, out: Obj, emitted: Set<string> | undefined): string {
  let s = "";
  for (const k in out) {
    if (!hasOwn(out, k) || emitted?.has(k)) continue;
    const v = out[k];
    if (v === undefined) continue;
    if (hasOwn(orig, k) && orig[k] === v) continue;
    s += (s === "" ? "" : ",") + JSON.stringify(k) + ":" + JSON.stringify(v);
  }
  return s;
}

/** True when `nv` is `ov` with members added (nested objects and arrays likewise). */
function derived(ov: Obj, nv: Obj): boolean {
  for (const k in ov) {
    if (!hasOwn(ov, k)) continue;
    if (!hasOwn(nv, k)) return false;
    const a = ov[k];
    const b = nv[k];
    if (a === b) continue;
    if (isPlain(a) && isPlain(b) && derived(a, b)) continue;
    if (Array.isArray(a) && Array.isArray(b) && extends_(a, b)) continue;
    return false;
  }
  return true;
}

/** True when `nv` starts with every element of `ov`, in order (the same values). */
function extends_(ov: readonly unknown[], nv: readonly unknown[]): boolean {
  if (nv.length < ov.length) return false;
  for (let i = 0; i < ov.length; i++) if (nv[i] !== ov[i]) return false;
  return true;
}

/** The array `text[start, end)` as it came, with `more` serialized after its elements. */
function appendedArray(text: string, start: number, end: number, more: readonly unknown[]): string {
  let close = end - 1;
  while (close > start && text.charCodeAt(close) !== 0x5d) close--;
  let last = close - 1;
  while (last > start && isWs(text.charCodeAt(last))) last--;
  const empty = last === start;
  let s = text.slice(start, last + 1);
  for (let i = 0; i < more.length; i++) s += (empty && i === 0 ? "" : ",") + JSON.stringify(more[i]);
  return s + "]";
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Where a number may be spelled in a way `JSON.stringify` would not write it: a digit
 * before `.`, `e` or `E`, sixteen digits in a row, or `-0`. Text in strings matches too
 * (IP addresses, dates); `atRisk` then looks at what comes before the match.
 */
const CANDIDATE = /\d[.eE][\d+-]|\d{16}|-0/g;

/**
 * True when serializing the parsed value of `text` again could write one of its values
 * differently: a number whose text is not what `JSON.stringify` writes for it (integers
 * beyond 2^53, `119.0`, `1E5`, `-0`, `1e400`, …) or a `\u` or `\/` escape in a string.
 * A record without either comes back the same through `JSON.parse` + `JSON.stringify`,
 * so it can take the object path; one with either takes `mergedText`. Native `indexOf`
 * for the escapes and one regular expression for where a number could be spelled
 * otherwise, rather than a loop over the characters (docs/performance.md has the
 * counts). A match counts
 * only inside a number where JSON puts a value (after `:`, `,`, `[` or at the start),
 * and that number is then checked. Conservative: text in a string that looks like such
 * a number only sends the record down the lossless path.
 */
export function atRisk(text: string): boolean {
  if (text.indexOf("\\u") !== -1 || text.indexOf("\\/") !== -1) return true;
  CANDIDATE.lastIndex = 0;
  for (let m = CANDIDATE.exec(text); m !== null; m = CANDIDATE.exec(text)) {
    let start = m.index;
    while (start > 0 && isNumberChar(text.charCodeAt(start - 1))) start--;
    let before = start - 1;
    while (before >= 0 && isWs(text.charCodeAt(before))) before--;
    const b = before < 0 ? 0x5b : text.charCodeAt(before);
    if (b !== 0x3a /* : */ && b !== 0x2c /* , */ && b !== 0x5b /* [ */) continue;
    let end = m.index + 1;
    while (end < text.length && isNumberChar(text.charCodeAt(end))) end++;
    const tok = text.slice(start, end);
    if (String(Number(tok)) !== tok) return true;
  }
  return false;
}

/** Characters of a JSON number: digits, `-`, `+`, `.`, `e`, `E`. */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}
