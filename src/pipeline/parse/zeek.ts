/**
 * Zeek dns.log as JSON: `query`, `answers[]` (names, IPs, TXT text in order),
 * `id.orig_h` (a literal dotted key in Zeek's JSON writer; nested `id.orig_h` accepted too).
 * Zeek leaves out empty fields, so `answers` may be missing (NXDOMAIN).
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

/** `query` plus the connection originator `id.orig_h`. */
export function isZeek(o: JsonObject): boolean {
  if (typeof o.query !== "string") return false;
  if (o["id.orig_h"] !== undefined) return true;
  const id = o.id;
  return isObject(id) && id.orig_h !== undefined;
}

/** `answers[]` strings in order. */
export function parseZeek(o: JsonObject): ParsedRecord {
  const answers: string[] = [];
  if (Array.isArray(o.answers)) {
    for (const a of o.answers) {
      if (typeof a === "string") answers.push(a);
    }
  }
  return { kind: "zeek", record: o, queryName: o.query as string, answers };
}
