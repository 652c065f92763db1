/**
 * OTLP logs through the enricher, the same for `POST /v1/logs` and gRPC
 * `LogsService/Export`: each log record's DNS record is found, enriched, and the
 * enrichment written back into the same log record, which keeps everything else it had.
 *
 * Where the DNS record is:
 * - the body is a map (`kvlistValue`, what Fluent Bit's `opentelemetry` output sends for a
 *   parsed record): the record is that map; what dnsgeo adds (ECS fields, `dnsgeo.*`) is
 *   added to the map, the keys it had keep their values and types;
 * - the body is a string holding a JSON object (the Collector's filelog receiver): the
 *   body becomes the enriched JSON text, as `POST /v1/enrich` would answer it;
 * - otherwise the attributes, when they read as a DNS record of a known kind (Route 53,
 *   DNS Firewall, Zeek, Sysmon, ECS): the enrichment is added to the attributes.
 * Other log records go on untouched. With `otlp.semconv_attributes`, the primary
 * answer's geo and network data are also set as attributes named after the
 * OpenTelemetry semantic conventions (`geo.*`) and `dnsgeo.*` where there is none.
 */
import type { Enricher, OutputItem } from "../pipeline/enrich.js";
import { isPlain, setOwn } from "../pipeline/plain-object.js";
import { parseJsonBounded } from "../pipeline/json-depth.js";
import type { Pause } from "../pipeline/slices.js";
import type { DecodedItem } from "../pipeline/types.js";
import { int64Value, type AnyValue, type ExportLogsRequest, type KeyValue, type LogRecord } from "./otlp-proto.js";

type Obj = Record<string, unknown>;

/** Deepest AnyValue nesting turned into a record; a deeper body is passed on untouched. */
const MAX_DEPTH = 64;

class TooDeep extends Error {}

const has = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** The JS value of an AnyValue (OTLP/JSON-like: int64 as a number when safe, bytes as base64). */
export function anyToJs(v: AnyValue | null | undefined, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new TooDeep();
  if (v === null || v === undefined) return null;
  if (has(v, "stringValue")) return v.stringValue;
  if (has(v, "boolValue")) return v.boolValue;
  if (has(v, "intValue") && v.intValue !== undefined && v.intValue !== null) return int64Value(v.intValue);
  if (has(v, "doubleValue")) return v.doubleValue;
  if (has(v, "kvlistValue")) return kvToObject(v.kvlistValue?.values ?? [], depth + 1);
  if (has(v, "arrayValue")) return (v.arrayValue?.values ?? []).map((x) => anyToJs(x, depth + 1));
  if (has(v, "bytesValue") && v.bytesValue) return Buffer.from(v.bytesValue).toString("base64");
  return null;
}

/** A key-value list as an object (a repeated key: the last one wins). */
export function kvToObject(kvs: readonly KeyValue[], depth = 0): Obj {
  const o: Obj = {};
  for (const kv of kvs) setOwn(o, kv.key ?? "", anyToJs(kv.value, depth + 1));
  return o;
}

/** A JS value as an AnyValue: integers as intValue, other numbers as doubleValue. */
export function jsToAny(v: unknown, depth = 0): AnyValue {
  if (depth > MAX_DEPTH) return { stringValue: JSON.stringify(v) };
  switch (typeof v) {
    case "string":
      return { stringValue: v };
    case "boolean":
      return { boolValue: v };
    case "number":
      return Number.isSafeInteger(v) ? { intValue: v } : { doubleValue: v };
    case "object":
      if (v === null) return {};
      if (Array.isArray(v)) return { arrayValue: { values: v.map((x) => jsToAny(x, depth + 1)) } };
      return { kvlistValue: { values: Object.keys(v).filter((k) => (v as Obj)[k] !== undefined).map((k) => ({ key: k, value: jsToAny((v as Obj)[k], depth + 1) })) } };
    default:
      return { stringValue: String(v) };
  }
}

/**
 * Writes into `kvs` what `out` has that `orig` (the object `kvs` was read as) has not:
 * new keys appended, objects that got keys merged the same way, values dnsgeo owns
 * (`dnsgeo`, moved to `dnsgeo_original` by the formatter) replaced. Unchanged keys keep
 * their AnyValue as it came (an int stays an int, a double a double).
 */
function mergeInto(kvs: KeyValue[], orig: Obj, out: Obj): void {
  for (const key of Object.keys(out)) {
    const nv = out[key];
    if (nv === undefined) continue;
    if (!has(orig, key)) {
      kvs.push({ key, value: jsToAny(nv) });
      continue;
    }
    const ov = orig[key];
    if (nv === ov) continue;
    let at = -1;
    for (let i = kvs.length - 1; i >= 0; i--) {
      if ((kvs[i] as KeyValue).key === key) {
        at = i;
        break;
      }
    }
    if (at < 0) continue;
    const kv = kvs[at] as KeyValue;
    const sub = kv.value?.kvlistValue?.values;
    if (isPlain(nv) && isPlain(ov) && kv.value && has(kv.value, "kvlistValue") && sub) {
      mergeInto(sub, ov, nv);
      continue;
    }
    kv.value = jsToAny(nv);
  }
}

type Mode = "kv" | "str" | "attr";

interface Slot {
  rec: LogRecord;
  mode: Mode;
  orig: Obj;
}

/** The value of an output item (the record as enriched), or undefined for a line passed through. */
function outValue(it: OutputItem): unknown {
  if (it.kind === "json") return it.value;
  if (it.kind === "jsontext") return JSON.parse(it.parts.join("")) as unknown;
  return undefined;
}

function outText(it: OutputItem): string | undefined {
  if (it.kind === "jsontext") return it.parts.join("");
  if (it.kind === "json") return JSON.stringify(it.value);
  return undefined;
}

export interface OtlpEnrichOptions {
  /** Also set semantic-convention attributes (`otlp.semconv_attributes`). */
  semconv: boolean;
  pause?: Pause;
}

export interface OtlpEnrichSummary {
  /** Log records in the request. */
  records: number;
  /** Of them, those that held a DNS record (body or attributes) and went through the enricher. */
  enriched: number;
}

/** Enriches the log records of `req` in place. Never rejects because a lookup failed (the enricher never does). */
export async function enrichLogsRequest(enricher: Enricher, req: ExportLogsRequest, opts: OtlpEnrichOptions): Promise<OtlpEnrichSummary> {
  const slots: Slot[] = [];
  const items: DecodedItem[] = [];
  let records = 0;
  for (const rl of req.resourceLogs ?? []) {
    for (const sl of rl.scopeLogs ?? []) {
      for (const rec of sl.logRecords ?? []) {
        records++;
        try {
          const body = rec.body;
          if (body && has(body, "kvlistValue")) {
            const orig = kvToObject(body.kvlistValue?.values ?? []);
            slots.push({ rec, mode: "kv", orig });
            items.push({ kind: "json", value: orig });
            continue;
          }
          const s = body && has(body, "stringValue") ? body.stringValue : undefined;
          if (typeof s === "string" && s.trimStart().startsWith("{")) {
            let v: unknown;
            try {
              v = parseJsonBounded(s);
            } catch {
              v = undefined;
            }
            if (isPlain(v)) {
              slots.push({ rec, mode: "str", orig: v });
              // The source text lets the ECS formatter append instead of re-serializing.
              items.push({ kind: "json", value: v, text: s });
              continue;
            }
          }
          const attrs = rec.attributes ?? [];
          if (attrs.length > 0) {
            const orig = kvToObject(attrs);
            const p = enricher.parseItems([{ kind: "json", value: orig }]);
            const only = p.length === 1 ? p[0] : undefined;
            if (only?.kind === "record" && only.rec.kind !== "unknown") {
              slots.push({ rec, mode: "attr", orig });
              items.push({ kind: "json", value: orig });
            }
          }
        } catch (e) {
          if (!(e instanceof TooDeep)) throw e;
          // Nested deeper than any DNS record: passed on as it came.
        }
      }
    }
  }
  if (items.length === 0) return { records, enriched: 0 };
  // One record in, one out (never exploded): each output goes back into its own log record.
  const out = await enricher.enrichDecoded({ framing: "ndjson", items }, opts.pause ? { explode: false, pause: opts.pause } : { explode: false });
  if (out.items.length !== items.length) throw new Error(`enrichment gave ${out.items.length} records for ${items.length} log records`);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i] as Slot;
    const it = out.items[i] as OutputItem;
    let value: unknown;
    if (slot.mode === "str") {
      const text = outText(it);
      if (text === undefined) continue;
      slot.rec.body = { stringValue: text };
      if (opts.semconv) value = outValue(it);
    } else {
      value = outValue(it);
      if (!isPlain(value)) continue;
      if (slot.mode === "kv") {
        const kvs = slot.rec.body?.kvlistValue?.values;
        if (kvs && slot.rec.body?.kvlistValue) {
          mergeInto(kvs, slot.orig, value);
        } else if (slot.rec.body) {
          // An empty map decodes without its `values` array.
          slot.rec.body.kvlistValue = { values: jsToAny(value).kvlistValue?.values ?? [] };
        }
      } else {
        slot.rec.attributes ??= [];
        mergeInto(slot.rec.attributes, slot.orig, value);
      }
    }
    if (opts.semconv && isPlain(value)) setSemconv(slot.rec, value);
  }
  return { records, enriched: items.length };
}

/** Number pairs of the geo point encodings (`output.geo_point`). */
function latLon(loc: unknown): [number, number] | undefined {
  if (isPlain(loc) && typeof loc.lat === "number" && typeof loc.lon === "number") return [loc.lat, loc.lon];
  if (Array.isArray(loc) && typeof loc[0] === "number" && typeof loc[1] === "number") return [loc[1], loc[0]];
  if (typeof loc === "string") {
    const m = /^\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*$/.exec(loc) ?? /^POINT\s*\(\s*(-?[\d.]+)\s+(-?[\d.]+)\s*\)$/i.exec(loc);
    if (m) return loc.toUpperCase().startsWith("POINT") ? [Number(m[2]), Number(m[1])] : [Number(m[1]), Number(m[2])];
  }
  return undefined;
}

/** The attribute names `otlp.semconv_attributes` sets (README "OTLP logs"). */
export const SEMCONV_ATTRIBUTES = [
  "geo.location.lat",
  "geo.location.lon",
  "geo.country.iso_code",
  "geo.continent.code",
  "geo.region.iso_code",
  "geo.locality.name",
  "geo.postal_code",
  "dnsgeo.ip",
  "dnsgeo.as.number",
  "dnsgeo.as.organization.name",
  "dnsgeo.isp",
  "dnsgeo.org",
  "dnsgeo.status",
] as const;

/** Sets the semantic-convention attributes from the first answer with geo data (ECS output's `dnsgeo.answers`). */
function setSemconv(rec: LogRecord, enriched: Obj): void {
  const dg = enriched.dnsgeo;
  if (!isPlain(dg)) return;
  const attrs: Array<[string, AnyValue]> = [];
  const str = (v: string): AnyValue => ({ stringValue: v });
  if (typeof dg.status === "string") attrs.push(["dnsgeo.status", str(dg.status)]);
  const answers = Array.isArray(dg.answers) ? dg.answers : [];
  const a = answers.find((x) => isPlain(x) && (isPlain(x.geo) || isPlain(x.as))) as Obj | undefined;
  if (a) {
    if (typeof a.ip === "string") attrs.push(["dnsgeo.ip", str(a.ip)]);
    const geo = isPlain(a.geo) ? a.geo : {};
    const ll = latLon(geo.location);
    if (ll) attrs.push(["geo.location.lat", { doubleValue: ll[0] }], ["geo.location.lon", { doubleValue: ll[1] }]);
    const cc = typeof geo.country_iso_code === "string" ? geo.country_iso_code : undefined;
    if (cc) attrs.push(["geo.country.iso_code", str(cc)]);
    if (typeof geo.continent_code === "string") attrs.push(["geo.continent.code", str(geo.continent_code)]);
    // ISO 3166-2: country and subdivision ("US-WA"); ip-api gives the subdivision part only.
    if (typeof geo.region_iso_code === "string" && cc) attrs.push(["geo.region.iso_code", str(geo.region_iso_code.includes("-") ? geo.region_iso_code : `${cc}-${geo.region_iso_code}`)]);
    if (typeof geo.city_name === "string") attrs.push(["geo.locality.name", str(geo.city_name)]);
    if (typeof geo.postal_code === "string") attrs.push(["geo.postal_code", str(geo.postal_code)]);
    const as = isPlain(a.as) ? a.as : {};
    if (typeof as.number === "number") attrs.push(["dnsgeo.as.number", { intValue: as.number }]);
    if (isPlain(as.organization) && typeof as.organization.name === "string") attrs.push(["dnsgeo.as.organization.name", str(as.organization.name)]);
    if (typeof a.isp === "string") attrs.push(["dnsgeo.isp", str(a.isp)]);
    if (typeof a.org === "string") attrs.push(["dnsgeo.org", str(a.org)]);
  }
  if (attrs.length === 0) return;
  const names = new Set(attrs.map(([k]) => k));
  const kept = (rec.attributes ?? []).filter((kv) => !names.has(kv.key ?? ""));
  for (const [key, value] of attrs) kept.push({ key, value });
  rec.attributes = kept;
}
