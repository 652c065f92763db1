/**
 * parse: one decoded item → the DNS records in it (envelopes unwrapped) or
 * items to pass through. Pure; never throws; never mutates its input
 * (`rec.record` is the very input object for records that came on their own).
 *
 * Detection checks a few keys per kind, in this order: CloudWatch envelope,
 * Lambda `awslogs` event, Firehose request, Route 53 / DNS Firewall, Zeek, ECS,
 * OCSF DNS Activity, Sysmon 22, then `input.ip_fields` (custom) or unknown.
 */
import type { DecodedItem, ParsedItem, RecordEnvelope } from "./types.js";
import type { JsonObject, ParseContext } from "./parse/common.js";
import { isBase64Gzip, isObject } from "./parse/common.js";
import { awslogsData, expandBase64, expandCloudWatch, isCloudWatch } from "./parse/cloudwatch.js";
import { expandFirehose, isFirehose } from "./parse/firehose.js";
import { isRoute53, parseRoute53 } from "./parse/route53.js";
import { isZeek, parseZeek } from "./parse/zeek.js";
import { isEcs, parseEcs } from "./parse/ecs.js";
import { parseSysmon, sysmonData } from "./parse/sysmon.js";
import { parseCustom } from "./parse/custom.js";
import { parseJsonBounded } from "./json-depth.js";
import { arrayElements } from "./json-text.js";
import { isOcsfDns, parseOcsf } from "./parse/ocsf.js";

export { firehoseRequest } from "./parse/firehose.js";

/** Options of `parse`. */
export interface ParseOptions {
  /** Dotted paths read as answers from records of no known kind (`input.ip_fields`). */
  ipFields: readonly string[];
  /** Largest gzip payload inflated inside an envelope, bytes (default 64 MiB). */
  maxDecodedBytes?: number;
}

/** Envelopes nest (Firehose → gzip CloudWatch → message); deeper ones are not unwrapped. */
const MAX_DEPTH = 4;
const DEFAULT_MAX_DECODED = 64 * 1024 * 1024;

/**
 * Detects the kind of a decoded item and returns one item per output record:
 * envelopes expand into their events (a CloudWatch `CONTROL_MESSAGE` into none),
 * non-object JSON passes through (`not_object`), unparsed lines stay unparsed.
 */
export function parse(item: DecodedItem, opts: ParseOptions): ParsedItem[] {
  const out: ParsedItem[] = [];
  const ctx = contextFor(opts);
  try {
    if (item.kind === "unparsed") {
      if (!expandInline(item.raw.trim(), 0, out, ctx)) return [item];
      return out;
    }
    parseValue(item.value, 0, out, undefined, ctx, item.text);
    if (out.length === 1) {
      const only = out[0];
      if (only?.kind === "record" && only.rec.record === item.value) {
        only.rec.whole = true;
        if (item.src !== undefined) {
          only.rec.src = item.src;
          only.rec.at = item.at ?? 0;
        }
      }
    }
    return out;
  } catch {
    // Nothing above should throw on JSON input; if it ever does, the item still flows.
    if (item.kind === "unparsed") return [item];
    const p: ParsedItem = { kind: "passthrough", value: item.value, reason: "not_object" };
    if (item.text !== undefined) p.text = item.text;
    return [p];
  }
}

const contexts = new WeakMap<ParseOptions, ParseContext>();

function contextFor(opts: ParseOptions): ParseContext {
  let ctx = contexts.get(opts);
  if (ctx === undefined) {
    const c: ParseContext = {
      ipFields: opts.ipFields,
      maxDecodedBytes: opts.maxDecodedBytes ?? DEFAULT_MAX_DECODED,
      value: (value, depth, out, envelope, text) => parseValue(value, depth, out, envelope, c, text),
      text: (text, depth, out) => parseText(text, depth, out, c),
    };
    ctx = c;
    contexts.set(opts, ctx);
  }
  return ctx;
}

function parseValue(
  value: unknown,
  depth: number,
  out: ParsedItem[],
  envelope: RecordEnvelope | undefined,
  ctx: ParseContext,
  text?: string,
): void {
  if (!isObject(value)) {
    if (typeof value === "string" && depth < MAX_DEPTH && expandInline(value, depth, out, ctx)) return;
    const p: ParsedItem = { kind: "passthrough", value, reason: "not_object" };
    if (text !== undefined) p.text = text;
    out.push(p);
    return;
  }
  if (depth < MAX_DEPTH && expandEnvelope(value, depth, out, ctx, text)) return;
  const rec = parseRecord(value, ctx.ipFields);
  if (envelope !== undefined) rec.envelope = envelope;
  if (text !== undefined) rec.text = text;
  out.push({ kind: "record", rec });
}

function expandEnvelope(o: JsonObject, depth: number, out: ParsedItem[], ctx: ParseContext, text: string | undefined): boolean {
  if (isCloudWatch(o)) {
    expandCloudWatch(o, depth, out, ctx);
    return true;
  }
  const awslogs = awslogsData(o);
  if (awslogs !== undefined) {
    // Not gzip, or only whitespace inside: the event itself flows on, untouched.
    if (!expandBase64(awslogs, depth, out, ctx)) {
      const p: ParsedItem = { kind: "passthrough", value: o, reason: "unparsed" };
      if (text !== undefined) p.text = text;
      out.push(p);
    }
    return true;
  }
  if (isFirehose(o)) {
    expandFirehose(o, depth, out, ctx);
    return true;
  }
  return false;
}

/**
 * Base64 gzip standing alone (a raw line, a JSON string): replaced by what it
 * holds only when that is at least one record, or an envelope that carries
 * nothing by design (a `CONTROL_MESSAGE`); text that merely starts with `H4sI`,
 * or gzip of plain text, stays as it was (false).
 */
function expandInline(s: string, depth: number, out: ParsedItem[], ctx: ParseContext): boolean {
  if (!isBase64Gzip(s)) return false;
  const inner: ParsedItem[] = [];
  if (!expandBase64(s, depth, inner, ctx)) return false;
  let records = inner.length === 0;
  for (const p of inner) {
    if (p.kind === "record") {
      records = true;
      break;
    }
  }
  if (!records) return false;
  for (const p of inner) out.push(p);
  return true;
}

function parseRecord(o: JsonObject, ipFields: readonly string[]) {
  if (isRoute53(o)) return parseRoute53(o);
  if (isZeek(o)) return parseZeek(o);
  if (isEcs(o)) return parseEcs(o);
  if (isOcsfDns(o)) return parseOcsf(o);
  const sysmon = sysmonData(o);
  if (sysmon !== undefined) return parseSysmon(o, sysmon);
  return parseCustom(o, ipFields);
}

/**
 * Text found inside an envelope: one JSON document (possibly pretty-printed, an
 * array expands to its elements) or NDJSON lines, each parsed on its own.
 */
function parseText(input: string, depth: number, out: ParsedItem[], ctx: ParseContext): boolean {
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  const trimmed = text.trim();
  if (trimmed.length === 0) return false;
  const c = trimmed.charCodeAt(0);
  if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
    let whole: unknown;
    let ok = false;
    try {
      whole = parseJsonBounded(trimmed);
      ok = true;
    } catch {
      ok = false;
    }
    if (ok) {
      if (!Array.isArray(whole)) {
        parseValue(whole, depth, out, undefined, ctx, trimmed);
        return true;
      }
      const spans = arrayElements(trimmed, 0);
      for (let i = 0; i < whole.length; i++) {
        const span = spans[i];
        parseValue(whole[i], depth, out, undefined, ctx, span === undefined ? undefined : trimmed.slice(span[0], span[1]));
      }
      return whole.length > 0;
    }
  }
  let start = 0;
  while (start < text.length) {
    let nl = text.indexOf("\n", start);
    if (nl === -1) nl = text.length;
    const line = text.slice(start, nl).trim();
    start = nl + 1;
    if (line.length === 0) continue;
    let value: unknown;
    try {
      value = parseJsonBounded(line);
    } catch {
      const parts = line.charCodeAt(0) === 0x7b ? splitConcatenated(line) : undefined;
      if (parts !== undefined) {
        for (const [v, t] of parts) parseValue(v, depth, out, undefined, ctx, t);
      } else if (!(depth < MAX_DEPTH && expandInline(line, depth, out, ctx))) {
        out.push({ kind: "unparsed", raw: line });
      }
      continue;
    }
    parseValue(value, depth, out, undefined, ctx, line);
  }
  return true;
}

/**
 * `{…}{…}` with no separator (Firehose can join records that way); undefined
 * unless every piece parses.
 */
function splitConcatenated(line: string): Array<[unknown, string]> | undefined {
  const values: Array<[unknown, string]> = [];
  let depthCount = 0;
  let inString = false;
  let start = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depthCount++;
    else if (c === 0x7d || c === 0x5d) {
      depthCount--;
      if (depthCount === 0) {
        try {
          const piece = line.slice(start, i + 1);
          values.push([parseJsonBounded(piece), piece]);
        } catch {
          return undefined;
        }
        start = i + 1;
        while (start < line.length && line.charCodeAt(start) <= 0x20) start++;
        i = start - 1;
      }
    }
  }
  return start >= line.length && values.length > 1 ? values : undefined;
}
