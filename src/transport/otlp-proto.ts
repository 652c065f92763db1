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
import type { Pause } from "../pipeline/slices.js";

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
  resourceLogs: protobuf.Type;
  scopeLogs: protobuf.Type;
  logRecord: protobuf.Type;
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
    resourceLogs: root.lookupType("opentelemetry.proto.logs.v1.ResourceLogs"),
    scopeLogs: root.lookupType("opentelemetry.proto.logs.v1.ScopeLogs"),
    logRecord: root.lookupType("opentelemetry.proto.logs.v1.LogRecord"),
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

/** Protobuf wire-format key of a length-delimited field: `ExportLogsServiceRequest.resource_logs` (1) and `ResourceLogs.resource`, ... */
const LEN_FIELD_1 = 0x0a;
/** ... `ResourceLogs.scope_logs` (2), `ScopeLogs.log_records` (2). */
const LEN_FIELD_2 = 0x12;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes a field key and a varint length at `at`; returns where the field's bytes start. */
function writeHeader(buf: Buffer, at: number, key: number, len: number): number {
  buf[at++] = key;
  while (len >= 0x80) {
    buf[at++] = (len & 0x7f) | 0x80;
    len = Math.floor(len / 128);
  }
  buf[at++] = len;
  return at;
}

/**
 * An `ExportLogsServiceRequest` encoded log record by log record: each record, each
 * ResourceLogs' and ScopeLogs' own fields once, so any run of records goes out as a
 * request of its own (with its resource and scope) by copying bytes, never by encoding
 * again. Encoding the whole message at once makes protobufjs hold an operation object
 * per field until the end: ~750 ms and most of a second of garbage collection for 5 000
 * enriched Route 53 records (4.8 MB), in one turn of the event loop.
 */
export class EncodedLogsRequest {
  /** The encoded log records, in request order. */
  readonly records: Buffer[] = [];
  /** Per record, the index in `scopes` of the ScopeLogs it is in. */
  readonly scopeOf: number[] = [];
  /** Per ScopeLogs: its fields but `log_records`, and the index in `resources` of its ResourceLogs. */
  readonly scopes: Array<{ head: Buffer; resource: number }> = [];
  /** Per ResourceLogs: its fields but `scope_logs`. */
  readonly resources: Buffer[] = [];

  get count(): number {
    return this.records.length;
  }

  /**
   * Records `[0, count)` cut into runs whose requests are at most `maxBytes` (a record
   * larger than that goes alone), in order.
   */
  cut(maxBytes: number): Array<[number, number]> {
    const runs: Array<[number, number]> = [];
    let lo = 0;
    let size = 0;
    for (let i = 0; i < this.records.length; i++) {
      const s = this.scopeOf[i] as number;
      const scope = this.scopes[s] as { head: Buffer; resource: number };
      const rec = (this.records[i] as Buffer).length + 6;
      const heads = i === lo || s !== this.scopeOf[i - 1] ? scope.head.length + (this.resources[scope.resource] as Buffer).length + 12 : 0;
      if (i > lo && size + rec + heads > maxBytes) {
        runs.push([lo, i]);
        lo = i;
        size = scope.head.length + (this.resources[scope.resource] as Buffer).length + 12 + rec;
        continue;
      }
      size += rec + heads;
    }
    if (lo < this.records.length) runs.push([lo, this.records.length]);
    return runs;
  }

  /** The protobuf bytes of a request holding records `[lo, hi)`, each under its own ResourceLogs and ScopeLogs. */
  bytes(lo: number, hi: number): Buffer {
    // Pass 1: the length of every ScopeLogs and ResourceLogs run; pass 2 writes them.
    const scopeLens: number[] = [];
    const resourceLens: number[] = [];
    let i = lo;
    let total = 0;
    while (i < hi) {
      const r = (this.scopes[this.scopeOf[i] as number] as { resource: number }).resource;
      let rl = (this.resources[r] as Buffer).length;
      while (i < hi && (this.scopes[this.scopeOf[i] as number] as { resource: number }).resource === r) {
        const s = this.scopeOf[i] as number;
        let sl = (this.scopes[s] as { head: Buffer }).head.length;
        for (; i < hi && this.scopeOf[i] === s; i++) {
          const n = (this.records[i] as Buffer).length;
          sl += 1 + varintSize(n) + n;
        }
        scopeLens.push(sl);
        rl += 1 + varintSize(sl) + sl;
      }
      resourceLens.push(rl);
      total += 1 + varintSize(rl) + rl;
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    let si = 0;
    let ri = 0;
    i = lo;
    while (i < hi) {
      const r = (this.scopes[this.scopeOf[i] as number] as { resource: number }).resource;
      at = writeHeader(out, at, LEN_FIELD_1, resourceLens[ri++] as number);
      at += (this.resources[r] as Buffer).copy(out, at);
      while (i < hi && (this.scopes[this.scopeOf[i] as number] as { resource: number }).resource === r) {
        const s = this.scopeOf[i] as number;
        at = writeHeader(out, at, LEN_FIELD_2, scopeLens[si++] as number);
        at += (this.scopes[s] as { head: Buffer }).head.copy(out, at);
        for (; i < hi && this.scopeOf[i] === s; i++) {
          const rec = this.records[i] as Buffer;
          at = writeHeader(out, at, LEN_FIELD_2, rec.length);
          at += rec.copy(out, at);
        }
      }
    }
    return out;
  }
}

function finished(w: protobuf.Writer): Buffer {
  const u8 = w.finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Encodes `req` record by record (see EncodedLogsRequest), in `pause`'s slices when given. */
export async function encodeLogsRequestPieces(req: ExportLogsRequest, pause?: Pause): Promise<EncodedLogsRequest> {
  const t = load();
  const enc = new EncodedLogsRequest();
  for (const rl of req.resourceLogs ?? []) {
    const r = enc.resources.length;
    enc.resources.push(finished(t.resourceLogs.encode(Object.assign({}, rl, { scopeLogs: [] }))));
    for (const sl of rl.scopeLogs ?? []) {
      const s = enc.scopes.length;
      enc.scopes.push({ head: finished(t.scopeLogs.encode(Object.assign({}, sl, { logRecords: [] }))), resource: r });
      for (const lr of sl.logRecords ?? []) {
        enc.records.push(finished(t.logRecord.encode(lr)));
        enc.scopeOf.push(s);
        if (pause?.isDue()) await pause.due();
      }
    }
  }
  return enc;
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
