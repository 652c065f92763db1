/**
 * `format` for QuickSight / Athena: flat rows, no nesting, no arrays
 * (README, "Output schema → QuickSight").
 *
 * Flattening of the original record:
 * - nested object keys are joined with `_` (`srcids.instance` → `srcids_instance`);
 * - a `.` inside a key becomes `_` too (Zeek's literal `id.orig_h` → `id_orig_h`,
 *   the same column its nested form gives): Athena/QuickSight names cannot hold `.`;
 * - an `answers` array of objects (Route 53 `Rdata`, ECS `data`) becomes one
 *   text column of those values joined with `;`;
 * - other arrays of scalars become `;`-joined text; arrays holding objects or
 *   arrays become their JSON text; an empty array becomes `null`;
 * - empty nested objects give no column; `null` stays `null`;
 * - when two paths flatten to the same column (`{a:{b:1}, a_b:2}`), the first
 *   in key order wins and the later one is dropped.
 * The enrichment columns (`QUICKSIGHT_COLUMNS`) are on every row, `null` when
 * unknown, so the table schema stays stable; they follow the original's
 * columns. They are dnsgeo's own: an original column of the same name moves to
 * `<name>_original` (unless the record already has that column, which is then
 * kept), and the record's own `dnsgeo` object is flattened as `dnsgeo_original_*`,
 * as in ECS, so nothing the record brought reads as dnsgeo's answer.
 */
import type { Config } from "../config.js";
import type { IpResult } from "../lookup/lookup.js";
import { copyOf, isPlain, setOwn } from "./plain-object.js";
import { answerView, recordStatus, type StatusResult } from "./status.js";
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
const NO_RESULTS: ReadonlyMap<string, IpResult> = new Map();

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

const DOTS = /\./g;

function flattenInto(out: Obj, o: Obj, prefix: string, depth: number): void {
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
    const v = o[k];
    if (v === undefined) continue;
    const key = k.indexOf(".") === -1 ? k : k.replace(DOTS, "_");
    const name = prefix === "" ? key : prefix + "_" + key;
    if (isPlain(v)) {
      if (depth < MAX_DEPTH) flattenInto(out, v, name, depth + 1);
      else if (!Object.prototype.hasOwnProperty.call(out, name)) setOwn(out, name, JSON.stringify(v));
      continue;
    }
    if (Object.prototype.hasOwnProperty.call(out, name)) continue;
    if (Array.isArray(v)) setOwn(out, name, arrayColumn(k, v));
    else if (typeof v === "object" && v !== null) setOwn(out, name, JSON.stringify(v));
    else setOwn(out, name, v);
  }
}

/** The original record as flat columns (see the module comment for the rules). */
export function flattenRecord(record: Obj): Obj {
  const out: Obj = {};
  if (record.dnsgeo !== undefined && hasOwn(record, "dnsgeo")) {
    // As in ECS: the record's own `dnsgeo` is kept as `dnsgeo_original`.
    const renamed: Obj = {};
    for (const k in record) {
      if (!hasOwn(record, k)) continue;
      if (k === "dnsgeo") {
        if (record.dnsgeo_original === undefined) setOwn(renamed, "dnsgeo_original", record.dnsgeo);
      } else setOwn(renamed, k, record[k]);
    }
    flattenInto(out, renamed, "", 0);
  } else flattenInto(out, record, "", 0);
  return out;
}

function nonEmpty(v: string | undefined): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

function finite(v: number | undefined): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * A fresh row holding every enrichment column for `a` (nulls when undefined).
 * Built with named writes so every row shares one shape.
 */
function columns(
  a: AnswerIp | undefined,
  answerIps: string | null,
  results: ReadonlyMap<string, IpResult>,
  status: string,
  reason: string | null,
): Obj {
  const e = a && a.class === "public" ? results.get(a.ip)?.entry : undefined;
  const g = e && !e.neg ? e.geo : undefined;
  if (!g) {
    return {
      answer_ip: a ? a.ip : null,
      answer_ips: answerIps,
      geo_lat: null,
      geo_lon: null,
      geo_country_code: null,
      geo_country: null,
      geo_region: null,
      geo_city: null,
      geo_postal_code: null,
      geo_timezone: null,
      as_number: null,
      as_org: null,
      org: null,
      isp: null,
      enrichment_status: status,
      enrichment_reason: reason,
    };
  }
  return {
    answer_ip: a ? a.ip : null,
    answer_ips: answerIps,
    geo_lat: finite(g.lat),
    geo_lon: finite(g.lon),
    geo_country_code: nonEmpty(g.countryCode),
    geo_country: nonEmpty(g.country),
    geo_region: nonEmpty(g.regionName) ?? nonEmpty(g.regionCode),
    geo_city: nonEmpty(g.city),
    geo_postal_code: nonEmpty(g.postalCode),
    geo_timezone: nonEmpty(g.timezone),
    as_number: finite(g.asn),
    as_org: nonEmpty(g.asOrg),
    org: nonEmpty(g.org),
    isp: nonEmpty(g.isp),
    enrichment_status: status,
    enrichment_reason: reason,
  };
}

const hasOwn = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** True when the flattened original already has a column named like an enrichment column. */
function collidesWithColumns(flat: Obj): boolean {
  for (const c of QUICKSIGHT_COLUMNS) if (hasOwn(flat, c)) return true;
  return false;
}

/**
 * One output row: the original's columns first, then the enrichment columns. An
 * original column named like an enrichment column moves to `<name>_original`.
 */
function row(flat: Obj, cols: Obj, collides: boolean): Obj {
  if (!collides) return Object.assign(copyOf(flat), cols);
  const r: Obj = {};
  for (const k in flat) {
    if (!hasOwn(flat, k)) continue;
    if ((QUICKSIGHT_COLUMNS as readonly string[]).includes(k)) {
      const moved = `${k}_original`;
      if (!hasOwn(flat, moved)) setOwn(r, moved, flat[k]);
    } else setOwn(r, k, flat[k]);
  }
  for (const c of QUICKSIGHT_COLUMNS) r[c] = cols[c];
  return r;
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
  status?: StatusResult,
): Record<string, unknown>[] {
  const flat = flattenRecord(rec.record);
  const answers = ex.answers;
  let answerIps: string | null = null;
  if (answers.length > 0) {
    const ips: string[] = [];
    for (const a of answers) if (a.reason !== "not_canonical" && a.reason !== "zone_id") ips.push(a.ip);
    if (ips.length > 0) answerIps = ips.join(";");
  }
  const st = status ?? recordStatus(ex, results, failed, rec.kind);
  const collides = collidesWithColumns(flat);

  if (out.explode) {
    const rows: Obj[] = [];
    for (const a of answers) {
      if (a.class !== "public") continue;
      const one = recordStatus({ answers: [a] }, results, failed, rec.kind);
      rows.push(row(flat, columns(a, answerIps, results, one.status, answerReason(a, results, failed)), collides));
    }
    if (rows.length > 0) return rows;
    return [row(flat, columns(undefined, answerIps, results, st.status, st.reason ?? null), collides)];
  }

  let primary: AnswerIp | undefined;
  for (const a of answers) {
    if (a.class === "public") {
      primary = a;
      break;
    }
  }
  const reason = primary ? answerReason(primary, results, failed) : (st.reason ?? null);
  return [row(flat, columns(primary, answerIps, results, st.status, reason), collides)];
}

/**
 * A value that is not a DNS record, in QuickSight mode: a plain object becomes
 * one flat row with every enrichment column (`enrichment_status: "skipped"`,
 * `enrichment_reason`: `reason`); anything else is returned unchanged.
 */
export function passthroughQuicksight(value: unknown, reason: string): unknown {
  if (!isPlain(value)) return value;
  const flat = flattenRecord(value);
  return row(flat, columns(undefined, null, NO_RESULTS, "skipped", reason), collidesWithColumns(flat));
}
