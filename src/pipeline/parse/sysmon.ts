/**
 * Sysmon event 22 (DNSEvent): `QueryName` + `QueryResults`, at the top level
 * (raw event data), under `EventData` (nxlog / Windows event JSON) or under
 * `winlog.event_data` (Winlogbeat, Elastic Agent). The two fields together only
 * exist in event 22, so the event id is not required.
 *
 * `QueryResults` is `;`-joined: `type:  5 edge.microsoft.com;::ffff:13.107.21.200;`.
 * `type: N name` entries are CNAME-style names, not answers.
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

function hasQuery(d: unknown): boolean {
  return isObject(d) && typeof d.QueryName === "string" && d.QueryResults !== undefined;
}

/** The object holding `QueryName`/`QueryResults`, or undefined when this is not event 22. */
export function sysmonData(o: JsonObject): JsonObject | undefined {
  if (hasQuery(o)) return o;
  const winlog = o.winlog;
  if (isObject(winlog) && hasQuery(winlog.event_data)) return winlog.event_data as JsonObject;
  if (hasQuery(o.EventData)) return o.EventData as JsonObject;
  if (hasQuery(o.event_data)) return o.event_data as JsonObject;
  return undefined;
}

/** IPv6-ish (has a colon) or dotted digits; names and `-` fail. */
function looksLikeIp(t: string): boolean {
  if (t.indexOf(":") !== -1) return true;
  let dots = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === 0x2e) dots++;
    else if (c < 0x30 || c > 0x39) return false;
  }
  return dots > 0;
}

/** Splits `QueryResults` into IP-looking tokens, raw (`::ffff:` kept for extract). */
export function sysmonAnswers(results: unknown): string[] {
  const answers: string[] = [];
  if (typeof results !== "string") return answers;
  let start = 0;
  while (start <= results.length) {
    let end = results.indexOf(";", start);
    if (end === -1) end = results.length;
    const token = results.slice(start, end).trim();
    if (token.length > 0 && !token.startsWith("type:") && looksLikeIp(token)) answers.push(token);
    start = end + 1;
  }
  return answers;
}

/** Reads a Sysmon 22 record whose event data `sysmonData` found. */
export function parseSysmon(o: JsonObject, data: JsonObject): ParsedRecord {
  return { kind: "sysmon", record: o, queryName: data.QueryName as string, answers: sysmonAnswers(data.QueryResults) };
}
