/**
 * The OTLP logs messages, from the official opentelemetry-proto `.proto` files as the
 * `@elastic/mockotlpserver` package ships them (kept in sync with opentelemetry-js by
 * Elastic), loaded once with protobufjs. Nothing here is a hand-written definition:
 * protobuf bytes are read and written by protobufjs from those files; OTLP/JSON is the
 * proto3 JSON mapping with OTLP's two differences (trace and span ids in hex, enums as
 * numbers), done by protobufjs's `fromObject` after the ids are turned into bytes.
 *
 * Fields newer than those files (a receiver of an older protocol version) are skipped
 * on decode and so are not sent on: README, "OTLP logs".
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import protobuf from "protobufjs";
import { DnsgeoError } from "../errors.js";
import { parseJsonBounded } from "../pipeline/json-depth.js";

/** Full name of the service, as gRPC paths and reflection know it. */
export const LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService";
/** gRPC path of `Export`. */
export const LOGS_EXPORT_PATH = `/${LOGS_SERVICE}/Export`;

const SERVICE_FILE = "opentelemetry/proto/collector/logs/v1/logs_service.proto";

/** protobufjs's 64-bit integers: a `Long` (the `long` package is installed) or a number. */
export type Int64 = number | { toNumber(): number; toString(): string; high: number; low: number; unsigned?: boolean };

/** `opentelemetry.proto.common.v1.AnyValue`: one of the fields is set. */
export interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: Int64;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: Uint8Array;
}

export interface KeyValue {
  key?: string;
  value?: AnyValue | null;
}

export interface LogRecord {
  timeUnixNano?: Int64;
  observedTimeUnixNano?: Int64;
  severityNumber?: number;
  severityText?: string;
  body?: AnyValue | null;
  attributes?: KeyValue[];
  droppedAttributesCount?: number;
  flags?: number;
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  [field: string]: unknown;
}

export interface ScopeLogs {
  scope?: unknown;
  logRecords?: LogRecord[];
  schemaUrl?: string;
}

export interface ResourceLogs {
  resource?: unknown;
  scopeLogs?: ScopeLogs[];
  schemaUrl?: string;
}

export interface ExportLogsRequest {
  resourceLogs?: ResourceLogs[];
}

export interface ExportLogsResponse {
  partialSuccess?: { rejectedLogRecords?: Int64; errorMessage?: string } | null;
}

/** Where the `.proto` files are: the `opentelemetry/` folder of @elastic/mockotlpserver. */
export function otlpProtoRoot(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("@elastic/mockotlpserver/package.json"));
}

interface Types {
  request: protobuf.Type;
  response: protobuf.Type;
}

let types: Types | undefined;

function load(): Types {
  if (types) return types;
  const base = otlpProtoRoot();
  const root = new protobuf.Root();
  // Imports in the files are relative to the folder that holds `opentelemetry/`.
  root.resolvePath = (_origin, target) => join(base, target);
  root.loadSync(SERVICE_FILE, { keepCase: false });
  root.resolveAll();
  types = {
    request: root.lookupType("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest"),
    response: root.lookupType("opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse"),
  };
  return types;
}

/** The `.proto` file of the service, relative to `otlpProtoRoot()` (for gRPC reflection and tests). */
export const OTLP_LOGS_SERVICE_FILE = SERVICE_FILE;

function bad(what: string, e: unknown): DnsgeoError {
  const msg = e instanceof Error ? e.message : String(e);
  return new DnsgeoError("DNSGEO_BAD_REQUEST", `${what}: ${msg.slice(0, 200)}`);
}

/** Decodes an `ExportLogsServiceRequest` from protobuf bytes; malformed bytes → DNSGEO_BAD_REQUEST. */
export function decodeLogsRequest(bytes: Uint8Array): ExportLogsRequest {
  const t = load().request;
  try {
    return t.decode(bytes) as unknown as ExportLogsRequest;
  } catch (e) {
    // protobufjs throws RangeError/Error for truncated or wrongly typed fields; a
    // too deep nesting of AnyValues ends as a RangeError of the stack as well.
    throw bad("not an OTLP ExportLogsServiceRequest (protobuf)", e);
  }
}

/** Encodes an `ExportLogsServiceRequest` as protobuf bytes. */
export function encodeLogsRequest(req: ExportLogsRequest): Buffer {
  const u8 = load().request.encode(req).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Encodes an `ExportLogsServiceResponse` as protobuf bytes. */
export function encodeLogsResponse(res: ExportLogsResponse): Buffer {
  const u8 = load().response.encode(res).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Decodes an `ExportLogsServiceResponse` (a next hop's answer); undefined when it is not one. */
export function decodeLogsResponse(bytes: Uint8Array): ExportLogsResponse | undefined {
  try {
    return load().response.decode(bytes) as unknown as ExportLogsResponse;
  } catch {
    return undefined;
  }
}

const HEX = /^[0-9a-fA-F]*$/;

/** OTLP/JSON writes trace and span ids as hex; protobufjs's `fromObject` reads bytes as base64. */
function idBytes(v: unknown, name: string, size: number): Buffer | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string" || !HEX.test(v) || v.length !== size * 2) {
    throw new DnsgeoError("DNSGEO_BAD_REQUEST", `${name} must be ${size * 2} hex digits in OTLP/JSON`);
  }
  return Buffer.from(v, "hex");
}

/**
 * Decodes an `ExportLogsServiceRequest` from OTLP/JSON text. Unknown fields are ignored
 * (as the OTLP spec asks of receivers); anything of the wrong type → DNSGEO_BAD_REQUEST.
 */
export function decodeLogsRequestJson(text: string): ExportLogsRequest {
  let doc: unknown;
  try {
    doc = parseJsonBounded(text);
  } catch (e) {
    throw bad("not JSON", e);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new DnsgeoError("DNSGEO_BAD_REQUEST", "OTLP/JSON: expected an object with resourceLogs");
  const rls = (doc as { resourceLogs?: unknown }).resourceLogs;
  if (Array.isArray(rls)) {
    for (const rl of rls) {
      const sls = (rl as { scopeLogs?: unknown } | null)?.scopeLogs;
      if (!Array.isArray(sls)) continue;
      for (const sl of sls) {
        const lrs = (sl as { logRecords?: unknown } | null)?.logRecords;
        if (!Array.isArray(lrs)) continue;
        for (const lr of lrs as Array<Record<string, unknown> | null>) {
          if (lr === null || typeof lr !== "object") continue;
          const tid = idBytes(lr.traceId, "traceId", 16);
          const sid = idBytes(lr.spanId, "spanId", 8);
          if (tid) lr.traceId = tid;
          else delete lr.traceId;
          if (sid) lr.spanId = sid;
          else delete lr.spanId;
        }
      }
    }
  }
  const t = load().request;
  try {
    // fromObject builds a message of the right shape; encode/decode then checks it whole.
    const msg = t.fromObject(doc);
    return msg as unknown as ExportLogsRequest;
  } catch (e) {
    throw bad("not an OTLP ExportLogsServiceRequest (JSON)", e);
  }
}

/** An `ExportLogsServiceResponse` as OTLP/JSON text. */
export function logsResponseJson(res: ExportLogsResponse): string {
  const ps = res.partialSuccess;
  if (!ps) return "{}";
  const o: Record<string, unknown> = {};
  if (ps.rejectedLogRecords !== undefined) o.rejectedLogRecords = String(ps.rejectedLogRecords);
  if (ps.errorMessage) o.errorMessage = ps.errorMessage;
  return JSON.stringify({ partialSuccess: o });
}

/** A 64-bit value as a JS number (safe range) or its decimal text. */
export function int64Value(v: Int64): number | string {
  if (typeof v === "number") return v;
  const n = v.toNumber();
  return Number.isSafeInteger(n) ? n : v.toString();
}

/** Records in a request. */
export function countLogRecords(req: ExportLogsRequest): number {
  let n = 0;
  for (const rl of req.resourceLogs ?? []) for (const sl of rl.scopeLogs ?? []) n += sl.logRecords?.length ?? 0;
  return n;
}
