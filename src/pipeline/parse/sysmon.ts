/**
 * Sysmon event 22 (DNSEvent): `QueryName` + `QueryResults`, at the top level
 * (raw event data), under `EventData` (nxlog / Windows event JSON), under
 * `winlog.event_data` (Winlogbeat, Elastic Agent) or under `Event.EventData` (the
 * XML event as JSON: evtx_dump, Chainsaw, Hayabusa, Sigma's test data). The two fields together only
 * exist in event 22, so the event id is not required; a failed query's empty
 * `QueryResults` may be dropped by the shipper, so `QueryName` alone counts when
 * the event id (`EventID`, `event.code`, `winlog.event_id` or `Event.System.EventID`) is 22.
 *
 * `QueryResults` is `;`-joined: `type:  5 edge.microsoft.com;::ffff:13.107.21.200;`.
 * `type: N name` entries are CNAME-style names, not answers.
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

function is22(v: unknown): boolean {
  // evtx_dump writes an EventID with attributes as {"#attributes": {…}, "#text": 22}.
  return v === 22 || v === "22" || (isObject(v) && (v["#text"] === 22 || v["#text"] === "22"));
}

/** Event id 22 in any of the places shippers put it. */
function isEvent22(o: JsonObject): boolean {
  if (is22(o.EventID)) return true;
  const event = o.event;
  if (isObject(event) && is22(event.code)) return true;
  const winlog = o.winlog;
  if (isObject(winlog) && is22(winlog.event_id)) return true;
  const ev = o.Event;
  return isObject(ev) && isObject(ev.System) && is22(ev.System.EventID);
}

/** The event id is looked at only when `QueryResults` is missing, so most records pay nothing. */
function hasQuery(d: unknown, o: JsonObject): boolean {
  return isObject(d) && typeof d.QueryName === "string" && (d.QueryResults !== undefined || isEvent22(o));
}

/** The object holding `QueryName`/`QueryResults`, or undefined when this is not event 22. */
export function sysmonData(o: JsonObject): JsonObject | undefined {
  if (hasQuery(o, o)) return o;
  const winlog = o.winlog;
  if (isObject(winlog) && hasQuery(winlog.event_data, o)) return winlog.event_data as JsonObject;
  if (hasQuery(o.EventData, o)) return o.EventData as JsonObject;
  if (hasQuery(o.event_data, o)) return o.event_data as JsonObject;
  const ev = o.Event;
  if (isObject(ev) && hasQuery(ev.EventData, o)) return ev.EventData as JsonObject;
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
