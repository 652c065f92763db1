/**
 * OTLP logs export, transport-neutral: what `POST /v1/logs` (http-server.ts) and gRPC
 * `LogsService/Export` (grpc-server.ts) both call once they have admitted a request
 * (token, in-flight slot, body size and byte budget are theirs, as for every batch route).
 *
 * decode (protobuf or OTLP/JSON) → enrich each log record's DNS record (otlp-logs.ts) →
 * send the whole request on to `otlp.next_hop` (otlp-forwarder.ts) → answer success only
 * after the next hop's success, with its partial success added up. Without
 * `otlp.next_hop` a request is refused with DNSGEO_OTLP_NOT_CONFIGURED (503 /
 * UNAVAILABLE, retryable: nothing is dropped while the config is put right): an
 * `ExportLogsServiceResponse` has no room for the logs, so there is nothing else to do
 * with them.
 */
import { DnsgeoError } from "../errors.js";
import type { Pause } from "../pipeline/slices.js";
import type { TransportApp } from "./transport-app.js";
import { enrichLogsRequest } from "./otlp-logs.js";
import type { OtlpForwarder } from "./otlp-forwarder.js";
import { countLogRecords, decodeLogsRequest, decodeLogsRequestJson, encodeLogsResponse, logsResponseJson, type ExportLogsRequest, type ExportLogsResponse } from "./otlp-proto.js";

export interface OtlpService {
  /** `POST /v1/logs` with its (decompressed) body; resolves to the answer body and its type. */
  exportHttp(body: Buffer, contentType: string | undefined, pause?: Pause, userAgent?: string): Promise<{ contentType: string; body: Buffer }>;
  /** A decoded request (gRPC). */
  exportRequest(req: ExportLogsRequest, pause?: Pause): Promise<ExportLogsResponse>;
}

/** Which OTLP/HTTP encoding a Content-Type names, or undefined for one OTLP does not have. */
export function otlpEncoding(contentType: string | undefined): "protobuf" | "json" | undefined {
  const t = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (t === "application/x-protobuf" || t === "application/protobuf") return "protobuf";
  if (t === "application/json") return "json";
  return undefined;
}

/**
 * Fluent Bit's opentelemetry output's default `batch_size`. It sends a chunk as requests of
 * that many records and judges the chunk by the last one's answer only, so a 503 to an
 * earlier one loses its records: a request of exactly this many records from Fluent Bit
 * most likely means the default is in use (docs/reliability.md, OTLP with the real Fluent Bit).
 */
const FLUENT_BIT_DEFAULT_BATCH = 1000;

export function createOtlpService(app: TransportApp, forwarder: OtlpForwarder | undefined): OtlpService {
  const maxRecords = app.config.limits.max_records_per_request;
  const semconv = app.config.otlp.semconv_attributes;
  let warnedBatch = false;

  const exportRequest = async (req: ExportLogsRequest, pause?: Pause): Promise<ExportLogsResponse> => {
    if (!forwarder) throw new DnsgeoError("DNSGEO_OTLP_NOT_CONFIGURED");
    const n = countLogRecords(req);
    if (n > maxRecords) throw new DnsgeoError("DNSGEO_TOO_MANY_RECORDS", `${n} log records, limits.max_records_per_request is ${maxRecords}`);
    if (n === 0) return {};
    await enrichLogsRequest(app.enricher, req, pause ? { semconv, pause } : { semconv });
    const sent = await forwarder.send(req, pause);
    if (!sent.ok) throw new DnsgeoError("DNSGEO_NEXT_HOP_UNAVAILABLE", sent.detail);
    if (sent.rejected > 0 || sent.errorMessage) return { partialSuccess: { rejectedLogRecords: sent.rejected, errorMessage: sent.errorMessage } };
    return {};
  };

  return {
    exportRequest,
    async exportHttp(body, contentType, pause, userAgent) {
      // Refused before anything is read: the same request succeeds once otlp.next_hop is set.
      if (!forwarder) throw new DnsgeoError("DNSGEO_OTLP_NOT_CONFIGURED");
      const enc = otlpEncoding(contentType);
      if (!enc) throw new DnsgeoError("DNSGEO_BAD_REQUEST", `Content-Type must be application/x-protobuf or application/json for /v1/logs, got "${(contentType ?? "").slice(0, 60)}"`);
      const req = enc === "protobuf" ? decodeLogsRequest(body) : decodeLogsRequestJson(body.toString("utf8"));
      if (!warnedBatch && userAgent?.startsWith("Fluent-Bit") && countLogRecords(req) === FLUENT_BIT_DEFAULT_BATCH) {
        warnedBatch = true;
        app.logger.warn(
          { records: FLUENT_BIT_DEFAULT_BATCH },
          "Fluent Bit sent 1000 log records, its opentelemetry output's default batch_size: it judges a chunk by its last request's answer only, so a 503 to an earlier one loses those records; set batch_size 20000 on the output (one request per chunk, see examples/fluent-bit/otlp.yaml)",
        );
      }
      const res = await exportRequest(req, pause);
      return enc === "protobuf" ? { contentType: "application/x-protobuf", body: encodeLogsResponse(res) } : { contentType: "application/json", body: Buffer.from(logsResponseJson(res)) };
    },
  };
}
