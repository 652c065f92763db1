/**
 * `format` for QuickSight / Athena: flat rows of one schema (docs/output-schema.md, "Output schema →
 * QuickSight"). Every row carries exactly the columns of `QUICKSIGHT_SCHEMA`
 * (quicksight-schema.ts), in that order, `null` when a value is absent, whatever the
 * record's kind or shape, so one Athena table (examples/quicksight/athena-table.sql)
 * reads them all:
 *
 * - a few columns every DNS record has in some form, taken from where each kind keeps
 *   it (`query_name`, `query_type`, `rcode`, `src_ip`, `event_time`, …), as text: a
 *   number is written as the record spelled it;
 * - dnsgeo's enrichment columns (`answer_ip` … `enrichment_reason`);
 * - `record`: the original record as JSON text, exactly as it came (its own text when
 *   known), so no field of any kind is lost or renamed and Athena's `json_extract`
 *   reaches every one.
 *
 * Values that are not DNS records (unknown objects, JSON that is not an object) become
 * rows too (`record_kind: "unknown"`, `enrichment_status: "skipped"`).
 */
import type { Config } from "../config.js";
import type { IpResult } from "../lookup/lookup.js";
import { isPlain } from "./plain-object.js";
import { answerView, recordStatus, type StatusResult } from "./status.js";
import { textAt } from "./json-text.js";
import { sysmonData } from "./parse/sysmon.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";
import type { RecordPolicy } from "../policy/types.js";

type Obj = Record<string, unknown>;

/**
 * The enrichment columns of every QuickSight row, in order (a subset of
 * `QUICKSIGHT_ROW_COLUMNS`). `answer_ip` is the row's IP (the primary answer, or the
 * exploded one), `answer_ips` all answer IPs `;`-joined, `geo_lat`/`geo_lon` decimal
 * degrees, `as_number` a number, `enrichment_status` the `dnsgeo.status` vocabulary
 * and `enrichment_reason` why a row has no geo (skip reason, `not_found`, `pending`…).
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

const NO_RESULTS: ReadonlyMap<string, IpResult> = new Map();

/** Where each kind keeps the common columns: paths into the record (first found wins). */
type Path = readonly string[];
interface KindPaths {
  time: readonly Path[];
  type: readonly Path[];
  rcode: readonly Path[];
  src: readonly Path[];
}
const NONE: KindPaths = { time: [], type: [], rcode: [], src: [] };
const PATHS: Readonly<Record<string, KindPaths>> = {
  route53: { time: [["query_timestamp"]], type: [["query_type"]], rcode: [["rcode"]], src: [["srcaddr"]] },
  dns_firewall: { time: [["query_timestamp"]], type: [["query_type"]], rcode: [["rcode"]], src: [["srcaddr"]] },
  ecs: { time: [["@timestamp"]], type: [["dns", "question", "type"]], rcode: [["dns", "response_code"]], src: [["source", "ip"], ["client", "ip"]] },
  zeek: { time: [["ts"]], type: [["qtype_name"]], rcode: [["rcode_name"]], src: [["id.orig_h"], ["id", "orig_h"]] },
  ocsf: { time: [["time_dt"], ["time"]], type: [["query", "type"]], rcode: [["rcode"]], src: [["src_endpoint", "ip"]] },
};

/** The value at `path` of `o`, and the path itself (for finding its text). */
function at(o: Obj, path: Path): unknown {
  let cur: unknown = o;
  for (const k of path) {
    if (!isPlain(cur) || !Object.prototype.hasOwnProperty.call(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/**
 * The first of `paths` holding a string or a number, as text: a string as it is, a
 * number as the record's text spells it (`1.50` stays `1.50`); null when none does.
 */
function column(rec: ParsedRecord, base: Obj, prefix: Path, paths: readonly Path[]): string | null {
  for (const p of paths) {
    const v = at(base, p);
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "boolean") {
      const text = rec.text === undefined ? undefined : textAt(rec.text, 0, [...prefix, ...p]);
      return text ?? String(v);
    }
  }
  return null;
}

/** The record's own fields that every row carries (`record_kind` … `log_stream`). */
function commonColumns(rec: ParsedRecord): Obj {
  const r = rec.record;
  const paths = PATHS[rec.kind] ?? NONE;
  let time = column(rec, r, [], paths.time);
  let rcode = column(rec, r, [], paths.rcode);
  if (rec.kind === "sysmon") {
    // The event data sits at one of several places; its path is found again for number texts.
    const d = sysmonData(r);
    if (d !== undefined) {
      const prefix = sysmonPrefix(r, d);
      time = column(rec, d, prefix, [["UtcTime"]]);
      rcode = column(rec, d, prefix, [["QueryStatus"]]);
    }
  }
  const env = rec.envelope;
  return {
    record_kind: rec.kind,
    event_time: time,
    query_name: typeof rec.queryName === "string" ? rec.queryName : null,
    query_type: column(rec, r, [], paths.type),
    rcode,
    src_ip: column(rec, r, [], paths.src),
    answers: rec.answers.length > 0 ? rec.answers.join(";") : null,
    firewall_rule_action: rec.kind === "dns_firewall" && typeof r.firewall_rule_action === "string" ? r.firewall_rule_action : null,
    log_group: env?.logGroup ?? null,
    log_stream: env?.logStream ?? null,
  };
}

function sysmonPrefix(r: Obj, d: Obj): Path {
  if (d === r) return [];
  const w = r.winlog;
  if (isPlain(w) && w.event_data === d) return ["winlog", "event_data"];
  if (r.EventData === d) return ["EventData"];
  if (r.event_data === d) return ["event_data"];
  return ["Event", "EventData"];
}

function nonEmpty(v: string | undefined): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

function finite(v: number | undefined): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** One row: common columns, then the enrichment columns for `a`, then `record`. */
function row(
  common: Obj,
  a: AnswerIp | undefined,
  answerIps: string | null,
  results: ReadonlyMap<string, IpResult>,
  status: string,
  reason: string | null,
  record: string,
  policyTags: string | null = null,
): Obj {
  const e = a && a.class === "public" ? results.get(a.ip)?.entry : undefined;
  const g = e && !e.neg ? e.geo : undefined;
  return {
    record_kind: common.record_kind,
    event_time: common.event_time,
    query_name: common.query_name,
    query_type: common.query_type,
    rcode: common.rcode,
    src_ip: common.src_ip,
    answers: common.answers,
    firewall_rule_action: common.firewall_rule_action,
    log_group: common.log_group,
    log_stream: common.log_stream,
    answer_ip: a ? a.ip : null,
    answer_ips: answerIps,
    geo_lat: g ? finite(g.lat) : null,
    geo_lon: g ? finite(g.lon) : null,
    geo_country_code: g ? nonEmpty(g.countryCode) : null,
    geo_country: g ? nonEmpty(g.country) : null,
    geo_region: g ? (nonEmpty(g.regionName) ?? nonEmpty(g.regionCode)) : null,
    geo_city: g ? nonEmpty(g.city) : null,
    geo_postal_code: g ? nonEmpty(g.postalCode) : null,
    geo_timezone: g ? nonEmpty(g.timezone) : null,
    as_number: g ? finite(g.asn) : null,
    as_org: g ? nonEmpty(g.asOrg) : null,
    org: g ? nonEmpty(g.org) : null,
    isp: g ? nonEmpty(g.isp) : null,
    enrichment_status: status,
    enrichment_reason: reason,
    policy_tags: policyTags,
    record,
  };
}

function answerReason(a: AnswerIp, results: ReadonlyMap<string, IpResult>, failed: boolean | undefined): string | null {
  return answerView(a, results, failed).reason ?? null;
}

/** The record's JSON text: its own when known, else serialized from the parsed value. */
function recordText(text: string | undefined, value: unknown): string {
  return text ?? JSON.stringify(value) ?? "null";
}

/**
 * Rows for one record. With `out.explode`, one row per public answer IP (its own
 * status in `enrichment_status`); a record without public answers gives one row.
 * Otherwise one row whose columns describe the primary (first public) answer.
 * `answer_ips` lists every answer IP of the record.
 */
export function formatQuicksight(
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed?: boolean,
  status?: StatusResult,
  policy?: RecordPolicy,
): Record<string, unknown>[] {
  const common = commonColumns(rec);
  const tags = policy === undefined ? null : policy.tags.join(";");
  const record = recordText(rec.text, rec.record);
  const answers = ex.answers;
  let answerIps: string | null = null;
  if (answers.length > 0) {
    const ips: string[] = [];
    for (const a of answers) if (a.reason !== "not_canonical" && a.reason !== "zone_id") ips.push(a.ip);
    if (ips.length > 0) answerIps = ips.join(";");
  }
  const st = status ?? recordStatus(ex, results, failed, rec.kind);

  if (out.explode) {
    const rows: Obj[] = [];
    for (const a of answers) {
      if (a.class !== "public") continue;
      const one = recordStatus({ answers: [a] }, results, failed, rec.kind);
      rows.push(row(common, a, answerIps, results, one.status, answerReason(a, results, failed), record, policy === undefined ? null : rowTags(policy, a.ip)));
    }
    if (rows.length > 0) return rows;
    return [row(common, undefined, answerIps, results, st.status, st.reason ?? null, record, tags)];
  }

  let primary: AnswerIp | undefined;
  for (const a of answers) {
    if (a.class === "public") {
      primary = a;
      break;
    }
  }
  const reason = primary ? answerReason(primary, results, failed) : (st.reason ?? null);
  return [row(common, primary, answerIps, results, st.status, reason, record, tags)];
}

/** An exploded row's tags: rules that matched its answer, and rules on the query name alone. */
function rowTags(p: RecordPolicy, ip: string): string | null {
  const tags: string[] = [];
  for (const h of p.hits) if ((h.ip === undefined || h.ip === ip) && !tags.includes(h.tag)) tags.push(h.tag);
  return tags.length === 0 ? null : tags.join(";");
}

const PASSTHROUGH_COMMON: Obj = {
  record_kind: "unknown",
  event_time: null,
  query_name: null,
  query_type: null,
  rcode: null,
  src_ip: null,
  answers: null,
  firewall_rule_action: null,
  log_group: null,
  log_stream: null,
};

/**
 * A value that is not a DNS record, in QuickSight mode: one row with every column
 * (`record_kind: "unknown"`, `enrichment_status: "skipped"`, `enrichment_reason`:
 * `reason`), the value itself in `record` (`text`: its own JSON text, when known).
 */
export function passthroughQuicksight(value: unknown, reason: string, text?: string): Record<string, unknown> {
  return row(PASSTHROUGH_COMMON, undefined, null, NO_RESULTS, "skipped", reason, recordText(text, value));
}
