/**
 * OCSF DNS Activity (`class_uid` 4003), as Amazon Security Lake delivers Route 53
 * Resolver query logs (OCSF 1.1.0 in Security Lake's source version 2) and as other
 * OCSF producers write it: `query.hostname`, `answers[].rdata` (with `type`),
 * `src_endpoint.ip`. Any OCSF 1.x version: these fields have not moved.
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

/** The OCSF class of DNS Activity events. */
export const OCSF_DNS_ACTIVITY = 4003;

/** `class_uid` 4003 with a `query` object or an `answers` array. */
export function isOcsfDns(o: JsonObject): boolean {
  return o.class_uid === OCSF_DNS_ACTIVITY && (isObject(o.query) || Array.isArray(o.answers));
}

/**
 * Every answer's `rdata` in order whose `type` is A or AAAA, or absent (extract tells
 * IPs from names); other types (CNAME, TXT, PTR…) are left out, as for Route 53.
 */
export function parseOcsf(o: JsonObject): ParsedRecord {
  const answers: string[] = [];
  if (Array.isArray(o.answers)) {
    for (const a of o.answers) {
      if (!isObject(a) || typeof a.rdata !== "string") continue;
      const t = a.type;
      if (t === undefined || t === "A" || t === "AAAA") answers.push(a.rdata);
    }
  }
  const rec: ParsedRecord = { kind: "ocsf", record: o, answers };
  const q = o.query;
  if (isObject(q) && typeof q.hostname === "string") rec.queryName = q.hostname;
  return rec;
}
