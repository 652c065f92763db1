/**
 * The one table of error codes: code, message, HTTP status, gRPC status.
 * The error table in docs/interface.md is checked against this by a test.
 *
 * Shippers drop a batch on 400/401/403/404/413/422 and retry 408/429/5xx, so a
 * code gets a 4xx only when the same request can never succeed later.
 */

/**
 * The gRPC status codes the table uses, by their numbers in the gRPC spec (the same
 * values as grpc-js's `status` enum), so the core does not depend on a transport library.
 */
export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  FAILED_PRECONDITION: 9,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export interface ErrorSpec {
  message: string;
  http: number;
  grpc: GrpcStatus;
  /** Whether a shipper should retry the same request. */
  retryable: boolean;
}

export const ERROR_CODES = {
  DNSGEO_BODY_TOO_LARGE: { message: "request body is larger than the configured limit", http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, retryable: false },
  DNSGEO_TOO_MANY_RECORDS: { message: "request holds more records than limits.max_records_per_request", http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, retryable: false },
  DNSGEO_UNSUPPORTED_ENCODING: { message: "Content-Encoding is not one of gzip, deflate, zstd, snappy, identity", http: 415, grpc: GrpcStatus.INVALID_ARGUMENT, retryable: false },
  DNSGEO_BAD_COMPRESSION: { message: "compressed body is truncated or corrupt", http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, retryable: false },
  DNSGEO_OVERLOADED: { message: "too many requests in flight; retry after the given delay", http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, retryable: true },
  DNSGEO_BODY_TIMEOUT: { message: "the request body did not arrive within http.body_timeout_ms; retry", http: 408, grpc: GrpcStatus.DEADLINE_EXCEEDED, retryable: true },
  DNSGEO_UNAUTHENTICATED: { message: "missing or wrong bearer token", http: 401, grpc: GrpcStatus.UNAUTHENTICATED, retryable: false },
  DNSGEO_NOT_FOUND: { message: "no such route", http: 404, grpc: GrpcStatus.UNIMPLEMENTED, retryable: false },
  DNSGEO_METHOD_NOT_ALLOWED: { message: "method not allowed on this route", http: 405, grpc: GrpcStatus.UNIMPLEMENTED, retryable: false },
  DNSGEO_BAD_REQUEST: { message: "request is malformed", http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, retryable: false },
  DNSGEO_NOT_LOOKUPABLE: { message: "address is special-purpose or not a canonical IP and is never looked up", http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, retryable: false },
  DNSGEO_FORWARD_NOT_CONFIGURED: { message: "forward.url is not set", http: 503, grpc: GrpcStatus.FAILED_PRECONDITION, retryable: true },
  DNSGEO_NEXT_HOP_UNAVAILABLE: { message: "the next hop did not accept the batch; retry later", http: 503, grpc: GrpcStatus.UNAVAILABLE, retryable: true },
  DNSGEO_OTLP_NOT_CONFIGURED: { message: "otlp.next_hop is not set; POST /v1/logs and LogsService/Export need a next OTLP hop", http: 503, grpc: GrpcStatus.UNAVAILABLE, retryable: true },
  DNSGEO_SHUTTING_DOWN: { message: "server is shutting down; retry on another instance or later", http: 503, grpc: GrpcStatus.UNAVAILABLE, retryable: true },
  DNSGEO_INTERNAL: { message: "internal error; the request can be retried", http: 500, grpc: GrpcStatus.UNAVAILABLE, retryable: true },
  DNSGEO_CONFIG_INVALID: { message: "a config value is wrong; start-up stops naming the key", http: 500, grpc: GrpcStatus.INTERNAL, retryable: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * An error with a stable code from the table: every error dnsgeo answers a client with
 * is one (`DecodeError`, `ConfigError` and the transports' refusals are subclasses), so
 * a transport maps it to a status by its code alone.
 */
export class DnsgeoError extends Error {
  readonly code: ErrorCode;
  readonly http: number;
  readonly grpc: GrpcStatus;
  /**
   * `detail` is appended to the table's message; `options.message` replaces it (errors
   * whose text says more than the table can, such as which coding was unknown).
   */
  constructor(code: ErrorCode, detail?: string, options?: { message?: string; cause?: unknown }) {
    const spec: ErrorSpec = ERROR_CODES[code];
    super(options?.message ?? (detail ? `${spec.message}: ${detail}` : spec.message), options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DnsgeoError";
    this.code = code;
    this.http = spec.http;
    this.grpc = spec.grpc;
  }
}

/**
 * Whether a shipper should send the same request again: the one place that decides it,
 * from the table. HTTP answers such a 503 or 429 with `Retry-After`, gRPC with
 * `grpc-retry-pushback-ms`; anything else is dropped by shippers, so it must be a
 * request that can never succeed.
 */
export function isRetryable(code: ErrorCode): boolean {
  return ERROR_CODES[code].retryable;
}
