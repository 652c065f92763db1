/**
 * `format` for Elastic: ECS fields added to the original record (docs/output-schema.md,
 * "Output schema → ECS"). Pure and on the hot path: objects are built with plain
 * property writes, never spread or JSON round trips.
 *
 * Merge rules (add-only):
 * - The input is never mutated: the top level is copied, and so is every
 *   nested object that gets a new key (`dns`, `destination`, `destination.geo`…).
 * - A key already present in the original keeps its original value
 *   (`dns.resolved_ip` of an ECS event…).
 * - When `dns` or `destination` (or a nested key under them) exists but is not
 *   a plain object, nothing is added under it.
 * - `dnsgeo` is dnsgeo's own: whatever a record brings under that name (an
 *   object or not) moves to `dnsgeo_original` (unless the record already has a
 *   `dnsgeo_original`, which is then kept as it is) and `dnsgeo` holds only what
 *   dnsgeo computed. A record that says `status: "enriched"` on its own is not
 *   taken at its word.
 * - `destination` is written only where dnsgeo's answer cannot be mixed with the
 *   record's: when the record has no `destination`, or one with neither `geo` nor
 *   `as` and no `ip` other than the primary answer (ECS events from Packetbeat
 *   carry the DNS server there). Otherwise the record's `destination` is left as it
 *   came and dnsgeo's answer is only in `dnsgeo.answers`.
 * - `dns.resolved_ip` lists the canonical answer IPs, public and special-purpose
 *   alike (ECS: "all IPs seen in answers.data"); answers skipped as
 *   `not_canonical` or `zone_id` are left out because their text is not an IP an
 *   `ip`-typed field accepts. They still appear in `dnsgeo.answers` with a reason.
 * - Answers found by the resolve step (`via: "resolve"`) appear only in
 *   `dnsgeo.answers` (with `via`): they are not in the DNS answer the log
 *   recorded, so they are neither `dns.resolved_ip` nor `destination.*` (the
 *   client never talked to them, e.g. after a DNS Firewall BLOCK).
 * - Absent values are omitted, never `null` or `""`; empty objects are omitted.
 */
import type { Config } from "../config.js";
import type { Entry, GeoInfo, IpResult } from "../lookup/lookup.js";
import { copyOf, isPlain } from "./plain-object.js";
import { packValue, type MsgpackWriter } from "../codecs/msgpack-writer.js";
import { addOcsfEnrichment } from "./format-ocsf.js";
import { answerView, recordStatus, type StatusResult } from "./status.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";
import type { RecordPolicy } from "../policy/types.js";

type Obj = Record<string, unknown>;
type GeoPoint = Config["output"]["geo_point"];

/**
 * The object under `key` of `parent` to add keys into: a fresh copy of an
 * existing plain object, a new object when absent, undefined when the key holds
 * something else. The copy is written back into `parent` (itself a copy).
 */
function child(parent: Obj, key: string): Obj | undefined {
  const cur = parent[key];
  if (cur === undefined) {
    const o: Obj = {};
    parent[key] = o;
    return o;
  }
  if (!isPlain(cur)) return undefined;
  const o = copyOf(cur);
  parent[key] = o;
  return o;
}

/** Writes `v` under `k` unless the key is already set. */
function add(o: Obj, k: string, v: unknown): void {
  if (o[k] === undefined) o[k] = v;
}

function str(v: string | undefined): v is string {
  return typeof v === "string" && v !== "";
}

function num(v: number | undefined): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** An ECS `geo_point` in the configured encoding; undefined unless lat and lon are both numbers. */
export function geoPoint(lat: number | undefined, lon: number | undefined, enc: GeoPoint): unknown {
  if (!num(lat) || !num(lon)) return undefined;
  switch (enc) {
    case "string":
      return `${lat},${lon}`;
    case "array":
      return [lon, lat];
    case "wkt":
      return `POINT (${lon} ${lat})`;
    default:
      return { lat, lon };
  }
}

/**
 * The ECS `geo` fields dnsgeo writes from a GeoInfo's strings, in output order (after
 * `location`): the one table both the object builder and the JSON text writer read,
 * so a new field is added here once. `text` is the member's JSON start.
 */
const GEO_FIELDS: ReadonlyArray<{ from: keyof GeoInfo; ecs: string; text: string }> = (
  [
    ["countryCode", "country_iso_code"],
    ["country", "country_name"],
    ["regionCode", "region_iso_code"],
    ["regionName", "region_name"],
    ["city", "city_name"],
    ["postalCode", "postal_code"],
    ["timezone", "timezone"],
    ["continentCode", "continent_code"],
  ] as const
).map(([from, ecs]) => ({ from, ecs, text: `,${JSON.stringify(ecs)}:` }));

/** A fresh ECS geo object for `g`, or undefined when it would be empty. */
function buildGeo(g: GeoInfo, enc: GeoPoint): Obj | undefined {
  const geo: Obj = {};
  let any = false;
  const loc = geoPoint(g.lat, g.lon, enc);
  if (loc !== undefined) {
    geo.location = loc;
    any = true;
  }
  for (const f of GEO_FIELDS) {
    const v = g[f.from];
    if (typeof v === "string" && v !== "") {
      geo[f.ecs] = v;
      any = true;
    }
  }
  return any ? geo : undefined;
}

/**
 * A member dnsgeo writes from an entry when `value` gives a non-empty string (`kind`
 * "string") or a finite number ("number"); otherwise it is left out. The object builder
 * calls `put`, which stores the value under `key` (with `inner`, one object down, as
 * `{[inner]: value}`): a store by a fixed name, cheaper in V8 than one by a computed key
 * (docs/performance.md). The JSON text writer writes `text` (`,"key":`, or
 * `,"key":{"inner":` with `inner`; `first` is the same without the comma), the value, then
 * `close`. The text writer's property test (text equals the serialized object, for any
 * input) holds `put` to `key` and `inner`.
 */
interface EntryField {
  key: string;
  inner: string | undefined;
  kind: "string" | "number";
  value: (g: GeoInfo, e: Entry) => string | number | undefined;
  put: (o: Obj, v: string | number) => void;
  text: string;
  first: string;
  close: string;
}

function entryField(key: string, kind: EntryField["kind"], value: EntryField["value"], put: EntryField["put"], inner?: string): EntryField {
  const text = inner === undefined ? `,${JSON.stringify(key)}:` : `,${JSON.stringify(key)}:{${JSON.stringify(inner)}:`;
  return { key, inner, kind, value, put, text, first: text.slice(1), close: inner === undefined ? "" : "}" };
}

/** The members of the ECS `as` object, in output order. */
const AS_FIELDS: readonly EntryField[] = [
  entryField("number", "number", (g) => g.asn, (o, v) => (o.number = v)),
  entryField("organization", "string", (g) => (str(g.asOrg) ? g.asOrg : g.org), (o, v) => (o.organization = { name: v }), "name"),
];

/**
 * The members of an answer object after `ip`, `geo` and `as` (the start it shares with
 * `destination`), in output order: the one table the object builder
 * (`entryAnswerObject`) and the JSON text writer (`cachedAnswerText`) read, so a new
 * answer field is added here once; the msgpack writer packs the object. A cached packed
 * answer is a fixmap with a pair to spare for `tags`, so `ip`, `geo`, `as` and these
 * stay within 14 pairs.
 */
const ANSWER_FIELDS: readonly EntryField[] = [
  entryField("isp", "string", (g) => g.isp, (o, v) => (o.isp = v)),
  entryField("org", "string", (g) => g.org, (o, v) => (o.org = v)),
  entryField("source", "string", (g, e) => (str(g.source) ? g.source : e.src), (o, v) => (o.source = v)),
];

function present(f: EntryField, v: string | number | undefined): v is string | number {
  return f.kind === "string" ? typeof v === "string" && v !== "" : typeof v === "number" && Number.isFinite(v);
}

/** Writes the `fields` present for `g` and `e` into `o`; says whether it wrote any. */
function addFields(o: Obj, fields: readonly EntryField[], g: GeoInfo, e: Entry): boolean {
  let any = false;
  for (const f of fields) {
    const v = f.value(g, e);
    if (present(f, v)) {
      f.put(o, v);
      any = true;
    }
  }
  return any;
}

/** ECS `as` object for a GeoInfo, or undefined when it has neither number nor organization. */
function asObject(g: GeoInfo, e: Entry): Obj | undefined {
  const as: Obj = {};
  return addFields(as, AS_FIELDS, g, e) ? as : undefined;
}

/** Text of an answer suitable for an ECS `ip` field. */
function isIpText(a: AnswerIp): boolean {
  return a.reason !== "not_canonical" && a.reason !== "zone_id";
}

/** The answer object of a positive entry, up to its `ANSWER_FIELDS`: all of it for a final, fresh answer with no reason and no `via`. */
function entryAnswerObject(ip: string, e: Entry, g: GeoInfo, enc: GeoPoint): Obj {
  const o: Obj = { ip };
  const geo = buildGeo(g, enc);
  if (geo) o.geo = geo;
  const as = asObject(g, e);
  if (as) o.as = as;
  addFields(o, ANSWER_FIELDS, g, e);
  return o;
}

function answerObject(a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint, failed: boolean | undefined): Obj {
  const view = answerView(a, results, failed);
  const e = view.entry;
  let o: Obj;
  if (e && e.geo) {
    o = entryAnswerObject(a.ip, e, e.geo, enc);
    if (e.stale) o.stale = true;
  } else o = { ip: a.ip };
  if (view.reason !== undefined) o.reason = view.reason;
  if (a.via !== undefined) o.via = a.via;
  return o;
}

function addDestination(top: Obj, a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint): void {
  const e = results.get(a.ip)?.entry;
  const g = e && !e.neg ? e.geo : undefined;
  const geo = g ? buildGeo(g, enc) : undefined;
  const as = e && g ? asObject(g, e) : undefined;
  const existing = top.destination;
  if (existing === undefined) {
    const dest: Obj = { ip: a.ip };
    if (geo) dest.geo = geo;
    if (as) dest.as = as;
    top.destination = dest;
    return;
  }
  if (!isPlain(existing)) return;
  if (existing.ip !== undefined && existing.ip !== a.ip) return;
  // Geo or AS the record brought would sit beside dnsgeo's and read as its answer.
  if (existing.geo !== undefined || existing.as !== undefined) return;
  const dest = child(top, "destination") as Obj;
  add(dest, "ip", a.ip);
  if (geo) dest.geo = geo;
  if (as) dest.as = as;
}

/** `top.dnsgeo = fresh`, the record's own `dnsgeo` (if any) kept under `dnsgeo_original`. */
function ownDnsgeo(top: Obj, fresh: Obj): void {
  const incoming = top.dnsgeo;
  if (incoming !== undefined && top.dnsgeo_original === undefined) top.dnsgeo_original = incoming;
  top.dnsgeo = fresh;
}

function addEnvelope(top: Obj, rec: ParsedRecord): void {
  const env = rec.envelope;
  if (!env || typeof env !== "object") return;
  const group = typeof env.logGroup === "string" && env.logGroup !== "" ? env.logGroup : undefined;
  const stream = typeof env.logStream === "string" && env.logStream !== "" ? env.logStream : undefined;
  if (group === undefined && stream === undefined) return;
  const aws = child(top, "aws");
  if (!aws) return;
  const cw = child(aws, "cloudwatch");
  if (!cw) return;
  if (group !== undefined) add(cw, "log_group", group);
  if (stream !== undefined) add(cw, "log_stream", stream);
}

/**
 * The record with ECS fields added: `dns.resolved_ip`, `destination.*` for the
 * primary (first public) answer when `out.destination`, `dnsgeo.status`,
 * `dnsgeo.reason`, `dnsgeo.answers[]`, and `aws.cloudwatch.log_group` /
 * `log_stream` when the record came in a CloudWatch envelope. `failed` says the
 * lookup itself failed (status `error`). Never mutates `rec`.
 */
export function formatEcs(
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed?: boolean,
  status?: StatusResult,
  policy?: RecordPolicy,
): Record<string, unknown> {
  const top: Obj = copyOf(rec.record);
  const enc = out.geo_point;
  const answers = ex.answers;

  // OCSF records get OCSF's places (format-ocsf.ts) instead of ECS `dns`/`destination`.
  if (rec.kind === "ocsf") addOcsfEnrichment(top, ex, results, failed);
  else if (answers.length > 0) {
    const ips: string[] = [];
    for (const a of answers) if (isIpText(a) && a.via === undefined) ips.push(a.ip);
    if (ips.length > 0) {
      const existing = top.dns;
      if (existing === undefined) top.dns = { resolved_ip: ips };
      else if (isPlain(existing) && existing.resolved_ip === undefined) (child(top, "dns") as Obj).resolved_ip = ips;
    }
  }

  if (out.destination && rec.kind !== "ocsf") {
    for (const a of answers) {
      if (a.class === "public" && a.via === undefined) {
        addDestination(top, a, results, enc);
        break;
      }
    }
  }

  const st = status ?? recordStatus(ex, results, failed, rec.kind);
  const fresh: Obj = { status: st.status };
  if (st.reason !== undefined) fresh.reason = st.reason;
  if (answers.length > 0) {
    const list: Obj[] = new Array(answers.length);
    for (let i = 0; i < answers.length; i++) {
      const o = answerObject(answers[i] as AnswerIp, results, enc, failed);
      const t = policy?.answerTags[i];
      if (t !== undefined) o.tags = t;
      list[i] = o;
    }
    fresh.answers = list;
  }
  if (policy !== undefined) fresh.policy = policy.hits;
  ownDnsgeo(top, fresh);

  addEnvelope(top, rec);
  if (policy !== undefined) addTags(top, policy.tags);
  return top;
}

/**
 * ECS `tags` (a keyword list): the record's own list with the policy tags it lacks
 * appended, or a new list; a `tags` that is not a list is left as it came.
 */
function addTags(top: Obj, tags: readonly string[]): void {
  const cur = top.tags;
  if (cur === undefined) top.tags = [...tags];
  else if (Array.isArray(cur)) {
    const missing = tags.filter((t) => !cur.includes(t));
    if (missing.length > 0) top.tags = [...(cur as unknown[]), ...missing];
  }
}

/**
 * A value that is not a DNS record, on its way out in ECS mode: a plain
 * object gets `dnsgeo: {status: "skipped", reason}` (its own `dnsgeo` kept under
 * `dnsgeo_original`; not mutated); anything else is returned unchanged.
 */
export function passthroughEcs(value: unknown, reason: string): unknown {
  if (!isPlain(value)) return value;
  const top: Obj = copyOf(value);
  ownDnsgeo(top, { status: "skipped", reason });
  return top;
}

/**
 * JSON text of answer / destination objects per entry, so a hot IP is serialized once,
 * not once per record. Kept small (a full memory tier holds one per entry): the
 * destination text of a positive entry is a view of the start of its answer's bytes.
 */
interface EntryTexts {
  enc: GeoPoint;
  /**
   * `cachedAnswerText` of a positive entry, UTF-8 encoded once: copying bytes into the
   * output costs less than encoding a string again for every record (measured).
   */
  answer?: Buffer;
  /** Bytes of the answer's `ipGeoAsText` start, which the destination text shares. */
  headLen?: number;
  /** The destination text without its closing `}`: for a positive entry, a view of `answer`'s bytes (no copy). */
  destination?: Buffer;
  /**
   * The same answer as msgpack (a map), for the forward path, and how many of its first
   * pairs (`ip`, `geo`, `as`) the destination map has and where they end: the destination
   * is a map header and a view of these bytes.
   */
  packed?: Buffer;
  packedHeadPairs?: number;
  packedHeadEnd?: number;
}
const entryTexts = new WeakMap<object, EntryTexts>();

function textsFor(entry: object, enc: GeoPoint): EntryTexts {
  let t = entryTexts.get(entry);
  if (t === undefined || t.enc !== enc) {
    t = { enc };
    entryTexts.set(entry, t);
  }
  return t;
}

/*
 * Direct JSON writers for the objects `buildGeo`, `asObject`, `answerObject`
 * and `addDestination` build, with the same keys in the same order (the
 * format-ecs-text tests compare them with JSON.stringify of those objects).
 * An entry read from SQLite or DynamoDB is a new object every time, so its
 * texts are written once per record: writing them straight is about three
 * times cheaper than building the objects and serializing them.
 * A finite number's `${n}` is its JSON text; strings go through JSON.stringify
 * for escaping.
 */

function geoPointText(lat: number | undefined, lon: number | undefined, enc: GeoPoint): string | undefined {
  if (!num(lat) || !num(lon)) return undefined;
  switch (enc) {
    case "string":
      return JSON.stringify(`${lat},${lon}`);
    case "array":
      return `[${lon},${lat}]`;
    case "wkt":
      return JSON.stringify(`POINT (${lon} ${lat})`);
    default:
      return `{"lat":${lat},"lon":${lon}}`;
  }
}

/** `JSON.stringify(buildGeo(g, enc))`, or undefined when that object would be empty. */
function geoText(g: GeoInfo, enc: GeoPoint): string | undefined {
  let s = "";
  const loc = geoPointText(g.lat, g.lon, enc);
  if (loc !== undefined) s += `,"location":${loc}`;
  for (const f of GEO_FIELDS) {
    const v = g[f.from];
    if (typeof v === "string" && v !== "") s += f.text + JSON.stringify(v);
  }
  return s === "" ? undefined : `{${s.slice(1)}}`;
}

/**
 * `s` with what `addFields` writes appended as JSON members: comma-separated, and
 * after a comma when `s` is not empty.
 */
function fieldsText(fields: readonly EntryField[], g: GeoInfo, e: Entry, s: string): string {
  for (const f of fields) {
    const v = f.value(g, e);
    if (present(f, v)) s += (s === "" ? f.first : f.text) + (f.kind === "number" ? `${v}` : JSON.stringify(v)) + f.close;
  }
  return s;
}

/** `JSON.stringify(asObject(g, e))`, or undefined when there is no such object. */
function asText(g: GeoInfo, e: Entry): string | undefined {
  const s = fieldsText(AS_FIELDS, g, e, "");
  return s === "" ? undefined : `{${s}}`;
}

/** `{"ip":…` + geo and as members (no closing brace): the start both answer and destination texts share. */
function ipGeoAsText(ip: string, e: Entry | undefined, g: GeoInfo | undefined, enc: GeoPoint): string {
  let s = `{"ip":${JSON.stringify(ip)}`;
  if (e === undefined || g === undefined) return s;
  const geo = geoText(g, enc);
  if (geo !== undefined) s += `,"geo":${geo}`;
  const as = asText(g, e);
  if (as !== undefined) s += `,"as":${as}`;
  return s;
}

/** `JSON.stringify(answerObject(a, …))` for a final, fresh, positive entry with no reason and no `via`. */
function cachedAnswerText(head: string, e: Entry, g: GeoInfo): string {
  return fieldsText(ANSWER_FIELDS, g, e, head) + "}";
}

/** The answer text of a positive entry, written and encoded once per entry. */
function answerOf(t: EntryTexts, ip: string, e: Entry, g: GeoInfo, enc: GeoPoint): Buffer {
  if (t.answer === undefined) {
    const head = ipGeoAsText(ip, e, g, enc);
    t.headLen = Buffer.byteLength(head, "utf8");
    t.answer = Buffer.from(cachedAnswerText(head, e, g), "utf8");
  }
  return t.answer;
}

/**
 * The answer's cached JSON text, or undefined when it is not cached: only answers
 * whose object depends on the entry alone are (a final, fresh, positive entry; no
 * reason such as pending/not_found, no `via`).
 */
function cachedAnswer(a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint, failed: boolean | undefined): Buffer | undefined {
  const r = a.class === "public" && !failed ? results.get(a.ip) : undefined;
  const e = r?.entry;
  if (e === undefined || !r?.final || !e.geo || e.neg || e.stale || a.via !== undefined) return undefined;
  return answerOf(textsFor(e, enc), a.ip, e, e.geo, enc);
}

/**
 * The cached JSON text of the `destination` object `addDestination` adds, without
 * its closing `}`, or undefined when the IP has no entry.
 */
function cachedDestination(a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint): Buffer | undefined {
  const e = results.get(a.ip)?.entry;
  if (e === undefined) return undefined;
  const t = textsFor(e, enc);
  if (t.destination === undefined) {
    if (e.neg || e.geo === undefined) t.destination = Buffer.from(ipGeoAsText(a.ip, undefined, undefined, enc), "utf8");
    else t.destination = answerOf(t, a.ip, e, e.geo, enc).subarray(0, t.headLen);
  }
  return t.destination;
}

/**
 * The ECS output as JSON text in pieces (their concatenation is the text),
 * built by appending the added fields to the record's own source text (`text`,
 * one NDJSON line) instead of serializing the whole record again. Gives exactly
 * what `JSON.stringify(formatEcs(…))` gives (same keys, same order); returns
 * undefined when the record already has a key dnsgeo would merge into (`dns`, `destination`, `dnsgeo`, `aws`) or came in an
 * envelope — the caller then takes the object path.
 */
export function formatEcsText(
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed: boolean | undefined,
  text: string,
  status?: StatusResult,
  policy?: RecordPolicy,
): Array<string | Buffer> | undefined {
  const r = rec.record;
  // A record with its own `tags` gets the policy tags appended by the object path.
  if (policy !== undefined && r.tags !== undefined) return undefined;
  if (rec.kind === "ocsf" || rec.envelope !== undefined || r.dns !== undefined || r.destination !== undefined || r.dnsgeo !== undefined || r.aws !== undefined) return undefined;
  let end = text.length - 1;
  while (end > 0 && text.charCodeAt(end) <= 0x20) end--;
  if (text.charCodeAt(end) !== 0x7d /* } */) return undefined;
  let last = end - 1;
  while (last > 0 && text.charCodeAt(last) <= 0x20) last--;
  // `{}`: nothing before the added keys, so no comma.
  // Pieces, not one concatenated string: the first (the record's own text) and the
  // cached texts of entries (already UTF-8 bytes) go into the output as they are —
  // joined, each would first be copied into a new string. Text made for this record
  // alone is joined into one piece between them: every piece is one write.
  const parts: Array<string | Buffer> = [text.charCodeAt(last) === 0x7b /* { */ ? text.slice(0, last + 1) : text.slice(0, end)];
  let small = text.charCodeAt(last) === 0x7b ? "" : ",";
  const enc = out.geo_point;
  const answers = ex.answers;
  let ips = "";
  // Canonical IP text is [0-9a-f.:] only: quoting needs no escaping (isIpText leaves out every other form).
  for (const a of answers) if (isIpText(a) && a.via === undefined) ips += ips === "" ? `"${a.ip}"` : `,"${a.ip}"`;
  let sep = "";
  if (ips !== "") {
    small += `"dns":{"resolved_ip":[${ips}]}`;
    sep = ",";
  }
  if (out.destination) {
    for (const a of answers) {
      if (a.class === "public" && a.via === undefined) {
        const d = cachedDestination(a, results, enc);
        if (d === undefined) small += `${sep}"destination":{"ip":${JSON.stringify(a.ip)}}`;
        else {
          parts.push(small + `${sep}"destination":`, d);
          small = "}";
        }
        sep = ",";
        break;
      }
    }
  }
  const st = status ?? recordStatus(ex, results, failed, rec.kind);
  // Status and reason are codes from a closed vocabulary (identifiers): no escaping needed.
  small += `${sep}"dnsgeo":{"status":"${st.status}"`;
  if (st.reason !== undefined) small += `,"reason":"${st.reason}"`;
  if (answers.length > 0) {
    small += `,"answers":[`;
    for (let i = 0; i < answers.length; i++) {
      const a = answers[i] as AnswerIp;
      const c = cachedAnswer(a, results, enc, failed);
      if (i > 0) small += ",";
      const t = policy?.answerTags[i];
      if (c === undefined) {
        const o = answerObject(a, results, enc, failed);
        if (t !== undefined) o.tags = t;
        small += JSON.stringify(o);
      } else if (t === undefined) {
        parts.push(small);
        parts.push(c);
        small = "";
      } else {
        // The cached text without its closing brace, then the tags.
        parts.push(small);
        parts.push(c.subarray(0, c.length - 1));
        small = `,"tags":${JSON.stringify(t)}}`;
      }
    }
    small += "]";
  }
  if (policy !== undefined) small += `,"policy":${JSON.stringify(policy.hits)}},"tags":${JSON.stringify(policy.tags)}}`;
  else small += "}}";
  parts.push(small);
  return parts;
}

/** The msgpack answer map of a positive entry, packed once per entry. */
function packedAnswerOf(t: EntryTexts, ip: string, e: Entry, g: GeoInfo, enc: GeoPoint): Buffer {
  if (t.packed === undefined) {
    const o = entryAnswerObject(ip, e, g, enc);
    const head: Obj = { ip };
    if (o.geo !== undefined) head.geo = o.geo;
    if (o.as !== undefined) head.as = o.as;
    t.packedHeadPairs = Object.keys(head).length;
    // Both maps are fixmaps (ip, geo, as and ANSWER_FIELDS: at most 14 pairs): a one-byte header, then the same pairs in the same order.
    t.packedHeadEnd = packValue(head).length;
    t.packed = packValue(o);
  }
  return t.packed;
}

/** `cachedAnswer` as msgpack: the answer map's bytes when they depend on the entry alone. */
function cachedPackedAnswer(a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint, failed: boolean | undefined): Buffer | undefined {
  const r = a.class === "public" && !failed ? results.get(a.ip) : undefined;
  const e = r?.entry;
  if (e === undefined || !r?.final || !e.geo || e.neg || e.stale || a.via !== undefined) return undefined;
  return packedAnswerOf(textsFor(e, enc), a.ip, e, e.geo, enc);
}

/** The `destination` map `addDestination` adds to a record that has none, written into `w`. */
function writeDestination(w: MsgpackWriter, a: AnswerIp, results: ReadonlyMap<string, IpResult>, enc: GeoPoint): void {
  const e = results.get(a.ip)?.entry;
  if (e === undefined || e.neg || e.geo === undefined) {
    w.mapHeader(1);
    w.string("ip");
    w.string(a.ip);
    return;
  }
  const t = textsFor(e, enc);
  const answer = packedAnswerOf(t, a.ip, e, e.geo, enc);
  w.mapHeader(t.packedHeadPairs as number);
  w.copy(answer, 1, t.packedHeadEnd as number);
}

/**
 * The keys `formatEcs` adds to a record, as msgpack key/value pairs written into `w`
 * (no map header): the forward path appends them to the record's own bytes, so a record
 * costs no object per answer and no packing — a cached entry's answer is a copy of
 * bytes packed once. Returns how many pairs it wrote, or undefined (nothing written)
 * when the record holds a key dnsgeo would merge into or move (`dns`, `destination`,
 * `dnsgeo`, `aws`, `tags` with policy tags), is OCSF or came in an envelope — the caller
 * then takes the object path. Same keys and values, in the same order, as the keys
 * `formatEcs` adds (test/unit/pipeline/format-ecs-packed.test.ts).
 */
export function formatEcsPacked(
  w: MsgpackWriter,
  rec: ParsedRecord,
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  out: Config["output"],
  failed: boolean | undefined,
  status?: StatusResult,
  policy?: RecordPolicy,
): number | undefined {
  const r = rec.record;
  if (policy !== undefined && r.tags !== undefined) return undefined;
  if (rec.kind === "ocsf" || rec.envelope !== undefined || r.dns !== undefined || r.destination !== undefined || r.dnsgeo !== undefined || r.aws !== undefined) return undefined;
  const enc = out.geo_point;
  const answers = ex.answers;
  let pairs = 0;
  let ips = 0;
  for (const a of answers) if (isIpText(a) && a.via === undefined) ips++;
  if (ips > 0) {
    w.string("dns");
    w.mapHeader(1);
    w.string("resolved_ip");
    w.arrayHeader(ips);
    for (const a of answers) if (isIpText(a) && a.via === undefined) w.string(a.ip);
    pairs++;
  }
  if (out.destination) {
    for (const a of answers) {
      if (a.class === "public" && a.via === undefined) {
        w.string("destination");
        writeDestination(w, a, results, enc);
        pairs++;
        break;
      }
    }
  }
  const st = status ?? recordStatus(ex, results, failed, rec.kind);
  w.string("dnsgeo");
  w.mapHeader(1 + (st.reason !== undefined ? 1 : 0) + (answers.length > 0 ? 1 : 0) + (policy !== undefined ? 1 : 0));
  w.string("status");
  w.string(st.status);
  if (st.reason !== undefined) {
    w.string("reason");
    w.string(st.reason);
  }
  if (answers.length > 0) {
    w.string("answers");
    w.arrayHeader(answers.length);
    for (let i = 0; i < answers.length; i++) {
      const a = answers[i] as AnswerIp;
      const c = cachedPackedAnswer(a, results, enc, failed);
      const t = policy?.answerTags[i];
      if (c === undefined) {
        const o = answerObject(a, results, enc, failed);
        if (t !== undefined) o.tags = t;
        w.value(o);
      } else if (t === undefined) w.bytes(c);
      else {
        // The cached map (a fixmap with a pair to spare, see ANSWER_FIELDS) with one pair more: the tags.
        w.byte((c[0] as number) + 1);
        w.copy(c, 1, c.length);
        w.string("tags");
        w.value(t);
      }
    }
  }
  if (policy !== undefined) {
    w.string("policy");
    w.value(policy.hits);
  }
  pairs++;
  if (policy !== undefined) {
    w.string("tags");
    w.value(policy.tags);
    pairs++;
  }
  return pairs;
}
