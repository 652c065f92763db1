/**
 * CloudWatch Logs subscription envelopes:
 * `{messageType, owner, logGroup, logStream, subscriptionFilters, logEvents:[{id, timestamp, message}]}`
 * (unknown keys such as `policyLevel` ignored), as a decoded object, as base64 of
 * its gzip (how Lambda and Firehose carry it), or as a Lambda event
 * `{awslogs:{data:"<base64 gzip>"}}`.
 */
import type { ParsedItem, RecordEnvelope } from "../types.js";
import type { JsonObject, ParseContext } from "./common.js";
import { base64Text, isObject, str } from "./common.js";
import { parseJsonBounded } from "../json-depth.js";

/** `messageType` plus `logEvents[]`. */
export function isCloudWatch(o: JsonObject): boolean {
  return typeof o.messageType === "string" && Array.isArray(o.logEvents);
}

/** A Lambda subscription event `{awslogs:{data}}`. */
export function awslogsData(o: JsonObject): string | undefined {
  const a = o.awslogs;
  return isObject(a) ? str(a.data) : undefined;
}

/**
 * One item per log event. A message that is a JSON object is parsed as a record
 * (usually Route 53); any other message makes the log event object itself the
 * record (kind `custom`/`unknown`), so the event still flows with its metadata.
 * `CONTROL_MESSAGE` (CloudWatch's connectivity check) carries no data: nothing out.
 */
export function expandCloudWatch(o: JsonObject, depth: number, out: ParsedItem[], ctx: ParseContext): void {
  if (o.messageType === "CONTROL_MESSAGE") return;
  const logGroup = str(o.logGroup);
  const logStream = str(o.logStream);
  const owner = str(o.owner);
  for (const ev of o.logEvents as unknown[]) {
    if (!isObject(ev)) {
      out.push({ kind: "passthrough", value: ev, reason: "not_object" });
      continue;
    }
    const env: RecordEnvelope = {};
    if (logGroup !== undefined) env.logGroup = logGroup;
    if (logStream !== undefined) env.logStream = logStream;
    if (owner !== undefined) env.owner = owner;
    if (typeof ev.id === "string") env.id = ev.id;
    if (typeof ev.timestamp === "number") env.timestamp = ev.timestamp;
    const msg = ev.message;
    let inner: unknown;
    let innerText: string | undefined;
    if (typeof msg === "string") {
      const c = firstChar(msg);
      if (c === 0x7b /* { */) {
        try {
          inner = parseJsonBounded(msg);
          // The message is the record's own text: its values go out as they were written.
          innerText = msg.trim();
        } catch {
          inner = undefined;
        }
      }
    } else if (isObject(msg)) {
      inner = msg;
    }
    if (isObject(inner)) ctx.value(inner, depth + 1, out, env, innerText);
    else ctx.value(ev, depth + 1, out, env);
  }
}

function firstChar(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return c;
  }
  return -1;
}

/**
 * Expands base64(gzip(envelope)) text; false when it is not base64 of gzip or
 * holds only whitespace (the caller keeps the original).
 */
export function expandBase64(data: string, depth: number, out: ParsedItem[], ctx: ParseContext): boolean {
  const text = base64Text(data, ctx.maxDecodedBytes, true);
  return text !== undefined && ctx.text(text, depth + 1, out);
}
