/**
 * `format` for QuickSight / Athena: flat rows, no nesting, no arrays
 * (design.md, "Output → QuickSight").
 *
 * Flattening of the original record:
 * - nested object keys are joined with `_` (`srcids.instance` → `srcids_instance`);
 * - an `answers` array of objects (Route 53 `Rdata`, ECS `data`) becomes one
 *   text column of those values joined with `;`;
 * - other arrays of scalars become `;`-joined text; arrays holding objects or
 *   arrays become their JSON text; an empty array becomes `null`;
 * - empty nested objects give no column; `null` stays `null`;
 * - when two paths flatten to the same column (`{a:{b:1}, a_b:2}`), the first
 *   in key order wins and the later one is dropped.
 * The enrichment columns (`QUICKSIGHT_COLUMNS`) are on every row, `null` when
 * unknown, so the table schema stays stable. If the original record already
 * has a column of the same name, the original value is kept (original fields
 * are never changed).
 */
import type { Config } from "../config.js";
import type { IpResult } from "../lookup/lookup.js";
import { answerView, recordStatus } from "./status.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";

type Obj = Record<string, unknown>;

/**
 * The enrichment columns of every QuickSight row, in order. `answer_ip` is the
 * row's IP (the primary answer, or the exploded one), `answer_ips` all answer
 * IPs `;`-joined, `geo_lat`/`geo_lon` decimal degrees, `as_number` a number,
 * `enrichment_status` the `dnsgeo.status` vocabulary and `enrichment_reason`
 * why a row has no geo (skip reason, `not_found`, `pending`…).
 */
export const QUICKSIGHT_COLUMNS = [
  "answer_ip",
  "answer_ips",
  "geo_lat",
  "geo_lon",
  "geo_country_code",
  "geo_country",
  "geo_region",
  "geo_city",
  "geo_postal_code",
  "geo_timezone",
  "as_number",
  "as_org",
  "org",
  "isp",
  "enrichment_status",
  "enrichment_reason",
] as const;

/** Name of one enrichment column. */
export type QuicksightColumn = (typeof QUICKSIGHT_COLUMNS)[number];

const MAX_DEPTH = 32;

function isPlain(v: unknown): v is Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function joinAnswers(arr: readonly unknown[]): string | undefined {
  const vals: string[] = [];
  for (const item of arr) {
    if (!isPlain(item)) return undefined;
    const v = item.Rdata !== undefined ? item.Rdata : item.data;
    if (typeof v === "string") vals.push(v);
    else if (typeof v === "number" || typeof v === "boolean") vals.push(String(v));
    else return undefined;
  }
  return vals.join(";");
}

function arrayColumn(key: string, arr: readonly unknown[]): unknown {
  if (arr.length === 0) return null;
  if (key === "answers") {
    const joined = joinAnswers(arr);
    if (joined !== undefined) return joined;
  }
  let scalars = true;
  for (const v of arr) {
    if (v !== null && typeof v === "object") {
      scalars = false;
      break;
    }
  }
  if (!scalars) return JSON.stringify(arr);
  const parts: string[] = new Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    parts[i] = v === null || v === undefined ? "" : String(v);
  }
  return parts.join(";");
}

function flattenInto(out: Obj, o: Obj, prefix: string, depth: number): void {
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
    const v = o[k];
    if (v === undefined) continue;
    const name = prefix === "" ? k : prefix + "_" + k;
    if (isPlain(v)) {
      if (depth < MAX_DEPTH) flattenInto(out, v, name, depth + 1);
      else if (out[name] === undefined) out[name] = JSON.stringify(v);
      continue;
    }
    if (out[name] !== undefined) continue;
    if (Array.isArray(v)) out[name] = arrayColumn(k, v);
    else if (typeof v === "object" && v !== null) out[name] = JSON.stringify(v);
    else out[name] = v;
  }
}

/** The original record as flat columns (see the module comment for the rules). */
export function flattenRecord(record: Obj): Obj {
  const out: Obj = {};
  flattenInto(out, record, "", 0);
  return out;
}

function nonEmpty(v: string | undefined): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

function finite(v: number | undefined): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function put(row: Obj, k: string, v: unknown): void {
  if (row[k] === undefined) row[k] = v;
}

/** Writes every enrichment column for `a` (or nulls when undefined) into `row`. */
function fillColumns(
  row: Obj,
  a: AnswerIp | undefined,
  answerIps: string | null,
  results: ReadonlyMap<string, IpResult>,
  status: string,
  reason: string | null,
): void {
  const e = a && a.class === "public" ? results.get(a.ip)?.entry : undefined;
  const g = e && !e.neg ? e.geo : undefined;
  put(row, "answer_ip", a ? a.ip : null);
  put(row, "answer_ips", answerIps);
  put(row, "geo_lat", g ? finite(g.lat) : null);
  put(row, "geo_lon", g ? finite(g.lon) : null);
  put(row, "geo_country_code", g ? nonEmpty(g.countryCode) : null);
  put(row, "geo_country", g ? nonEmpty(g.country) : null);
  put(row, "geo_region", g ? (nonEmpty(g.regionName) ?? nonEmpty(g.regionCode)) : null);
  put(row, "geo_city", g ? nonEmpty(g.city) : null);
  put(row, "geo_postal_code", g ? nonEmpty(g.postalCode) : null);
  put(row, "geo_timezone", g ? nonEmpty(g.timezone) : null);
  put(row, "as_number", g ? finite(g.asn) : null);
  put(row, "as_org", g ? nonEmpty(g.asOrg) : null);
  put(row, "org", g ? nonEmpty(g.org) : null);
  put(row, "isp", g ? nonEmpty(g.isp) : null);
  put(row, "enrichment_status", status);
  put(row, "enrichment_reason", reason);
}

function answerReason(a: AnswerIp, results: ReadonlyMap<string, IpResult>, failed: boolean | undefined): string | null {
  return answerView(a, results, failed).reason ?? null;
}

/**
 * Flat rows for one record. With `out.explode`, one row per public answer IP
 * (its own status in `enrichment_status`); a record without public answers
 * gives one row. Otherwise one row whose columns describe the primary (first
 * public) answer. `answer_ips` lists every answer IP of the record.
 */
export function formatQuicksight(
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed?: boolean,
): Record<string, unknown>[] {
  const flat = flattenRecord(rec.record);
  const answers = ex.answers;
  let answerIps: string | null = null;
  if (answers.length > 0) {
    const ips: string[] = [];
    for (const a of answers) if (a.reason !== "not_canonical" && a.reason !== "zone_id") ips.push(a.ip);
    if (ips.length > 0) answerIps = ips.join(";");
  }
  const st = recordStatus(ex, results, failed, rec.kind);

  if (out.explode) {
    const rows: Obj[] = [];
    for (const a of answers) {
      if (a.class !== "public") continue;
      const one = recordStatus({ answers: [a] }, results, failed, rec.kind);
      const row = Object.assign({}, flat);
      fillColumns(row, a, answerIps, results, one.status, answerReason(a, results, failed));
      rows.push(row);
    }
    if (rows.length > 0) return rows;
    fillColumns(flat, undefined, answerIps, results, st.status, st.reason ?? null);
    return [flat];
  }

  let primary: AnswerIp | undefined;
  for (const a of answers) {
    if (a.class === "public") {
      primary = a;
      break;
    }
  }
  const reason = primary ? answerReason(primary, results, failed) : (st.reason ?? null);
  fillColumns(flat, primary, answerIps, results, st.status, reason);
  return [flat];
}

/**
 * A value that is not a DNS record, in QuickSight mode: a plain object becomes
 * one flat row with every enrichment column (`enrichment_status: "skipped"`,
 * `enrichment_reason`: `reason`); anything else is returned unchanged.
 */
export function passthroughQuicksight(value: unknown, reason: string): unknown {
  if (!isPlain(value)) return value;
  const row = flattenRecord(value);
  fillColumns(row, undefined, null, new Map(), "skipped", reason);
  return row;
}
