/**
 * Kinesis Data Firehose HTTP endpoint delivery requests:
 * `{requestId, timestamp, records:[{data:"<base64>"}]}`. Each `data` may be
 * gzip (CloudWatch Logs → Firehose), and holds one JSON document, several NDJSON
 * lines, or a CloudWatch envelope.
 */
import type { ParsedItem } from "../types.js";
import type { JsonObject, ParseContext } from "./common.js";
import { base64Text, isObject } from "./common.js";

/** `requestId` plus `records[]`. */
export function isFirehose(o: JsonObject): boolean {
  return typeof o.requestId === "string" && Array.isArray(o.records);
}

/**
 * The ids a Firehose HTTP endpoint must echo (`{requestId, timestamp}` with 200),
 * or undefined when `value` is not a Firehose request. `timestamp` is the
 * request's own (epoch ms); 0 when it has none.
 */
export function firehoseRequest(value: unknown): { requestId: string; timestamp: number } | undefined {
  if (!isObject(value) || !isFirehose(value)) return undefined;
  const ts = value.timestamp;
  return { requestId: value.requestId as string, timestamp: typeof ts === "number" && Number.isFinite(ts) ? ts : 0 };
}

/**
 * Expands every record's data; a record that cannot be decoded or holds only
 * whitespace is passed through as is (one output per such record).
 */
export function expandFirehose(o: JsonObject, depth: number, out: ParsedItem[], ctx: ParseContext): void {
  for (const r of o.records as unknown[]) {
    const data = isObject(r) ? r.data : undefined;
    const text = typeof data === "string" ? base64Text(data, ctx.maxDecodedBytes) : undefined;
    if (text === undefined || !ctx.text(text, depth + 1, out)) {
      out.push({ kind: "passthrough", value: r, reason: "unparsed" });
    }
  }
}
