/**
 * The OpenAPI 3.1 description of dnsgeo's HTTP API, served at `GET /openapi.json`.
 * Written by hand next to the routes; a test validates it with an OpenAPI
 * validator and holds its operations equal to the routes the server answers.
 */
import { ERROR_CODES } from "../errors.js";
import { buildInfo } from "../version.js";

type Obj = Record<string, unknown>;

const ref = (name: string): Obj => ({ $ref: `#/components/schemas/${name}` });
const errorResponse = (description: string): Obj => ({ description, content: { "application/json": { schema: ref("Error") } } });
const retryLater = (description: string): Obj => ({
  description,
  headers: { "Retry-After": { description: "Seconds to wait before retrying (http.retry_after_s)", schema: { type: "integer" } } },
  content: { "application/json": { schema: ref("Error") } },
});

/** Query parameters and headers shared by the two batch routes. */
const batchParameters: Obj[] = [
  { name: "format", in: "query", required: false, description: "Output format; default output.format", schema: { type: "string", enum: ["ecs", "quicksight"] } },
  { name: "explode", in: "query", required: false, description: "QuickSight: one row per public answer IP; default output.explode", schema: { type: "string", enum: ["true", "false"] } },
  {
    name: "Content-Encoding",
    in: "header",
    required: false,
    description: "Body compression; snappy as a raw block or in the framing format",
    schema: { type: "string", enum: ["gzip", "deflate", "zstd", "snappy", "identity"] },
  },
];

const batchBody: Obj = {
  required: true,
  description:
    "DNS log records: NDJSON, a JSON array, or one JSON object (a CloudWatch Logs subscription or Kinesis Firehose envelope counts as one object). The answer uses the same framing.",
  content: {
    "application/x-ndjson": { schema: { type: "string", description: "One JSON record per line" } },
    "application/json": { schema: { oneOf: [{ type: "array", items: ref("Record") }, ref("Record")] } },
  },
};

const batchErrors: Obj = {
  "400": errorResponse("Malformed request or corrupt compressed body (DNSGEO_BAD_REQUEST, DNSGEO_BAD_COMPRESSION)"),
  "401": errorResponse("Missing or wrong bearer token (DNSGEO_UNAUTHENTICATED)"),
  "413": errorResponse("Body or record count over the configured limits (DNSGEO_BODY_TOO_LARGE, DNSGEO_TOO_MANY_RECORDS)"),
  "415": errorResponse("Unsupported Content-Encoding (DNSGEO_UNSUPPORTED_ENCODING)"),
};

const opsSecurity = [{}, { bearer: [] }];

/** Builds the document (a new object each call). */
export function openApiDocument(): Obj {
  return {
    openapi: "3.1.0",
    info: {
      title: "dnsgeo",
      version: buildInfo().version,
      summary: "Adds geo, ASN, ORG and ISP data to DNS logs",
      description:
        "The sidecar a log shipper calls inline. Records come back in the request's framing with geo data and a dnsgeo.status; a record is never dropped. The bearer token (auth.token) is required on every route when set; on the ops routes (/livez, /readyz, /metrics, /openapi.json and the status page) only with auth.protect_ops.",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    servers: [{ url: "/", description: "This dnsgeo (default 127.0.0.1:8053)" }],
    security: [{ bearer: [] }],
    paths: {
      "/v1/enrich": {
        post: {
          operationId: "enrich",
          summary: "Enrich a batch of DNS log records",
          parameters: batchParameters,
          requestBody: batchBody,
          responses: {
            "200": {
              description: "The records, enriched, in the request's framing; compressed when Accept-Encoding asks for it",
              content: {
                "application/x-ndjson": { schema: { type: "string" } },
                "application/json": { schema: { oneOf: [{ type: "array", items: ref("Record") }, ref("Record")] } },
              },
            },
            ...batchErrors,
            "503": retryLater("Overloaded or shutting down (DNSGEO_OVERLOADED, DNSGEO_SHUTTING_DOWN); retry after Retry-After"),
          },
        },
      },
      "/v1/forward": {
        post: {
          operationId: "forward",
          summary: "Enrich a batch and send it on to forward.url; 200 only once the next hop took every record (or it went to the dead-letter file)",
          parameters: batchParameters,
          requestBody: batchBody,
          responses: {
            "200": {
              description: "Every record was accepted by the next hop or written to the dead-letter file; Firehose requests get Firehose's answer shape",
              content: { "application/json": { schema: { oneOf: [ref("ForwardResult"), ref("FirehoseAnswer")] } } },
            },
            ...batchErrors,
            "502": errorResponse("The next hop refused the batch with a 4xx (DNSGEO_NEXT_HOP_REJECTED)"),
            "503": retryLater("The next hop is down, forward.url is not set, or dnsgeo is overloaded or shutting down; retry after Retry-After"),
          },
        },
      },
      "/v1/logs": {
        post: {
          operationId: "otlpLogs",
          summary: "OTLP/HTTP logs export: each log record's DNS record (body map, JSON string body, or attributes) enriched in place and the request sent on to otlp.next_hop; success only after the next hop's",
          requestBody: {
            required: true,
            content: {
              "application/x-protobuf": { schema: { type: "string", format: "binary", description: "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest" } },
              "application/json": { schema: { type: "object", description: "ExportLogsServiceRequest in OTLP/JSON" } },
            },
          },
          responses: {
            "200": {
              description: "The next hop accepted the request: ExportLogsServiceResponse (with its partial_success, if any), in the request's encoding",
              content: { "application/x-protobuf": { schema: { type: "string", format: "binary" } }, "application/json": { schema: { type: "object" } } },
            },
            "400": errorResponse("Not an ExportLogsServiceRequest, or a Content-Type other than application/x-protobuf or application/json"),
            "401": errorResponse("Missing or wrong bearer token"),
            "413": errorResponse("Body over http.max_body_bytes, or more log records than limits.max_records_per_request"),
            "503": retryLater("The next hop did not accept the request, otlp.next_hop is not set, or dnsgeo is overloaded or shutting down; retry after Retry-After"),
          },
        },
      },
      "/v1/lookup/{ip}": {
        get: {
          operationId: "lookupOne",
          summary: "Look one IP up (answers within lookup.deadline_ms: a first answer is often partial)",
          parameters: [{ name: "ip", in: "path", required: true, schema: { type: "string" }, example: "8.8.8.8" }],
          responses: {
            "200": { description: "The answer", content: { "application/json": { schema: ref("LookupAnswer") } } },
            "400": errorResponse("Not an IP, or a special-purpose address that is never looked up (DNSGEO_NOT_LOOKUPABLE)"),
            "401": errorResponse("Missing or wrong bearer token"),
          },
        },
      },
      "/v1/lookup": {
        post: {
          operationId: "lookupMany",
          summary: "Look several IPs up; invalid and special-purpose ones are reported per item",
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: {
                  oneOf: [
                    { type: "array", items: { type: "string" } },
                    { type: "object", required: ["ips"], properties: { ips: { type: "array", items: { type: "string" } } } },
                  ],
                },
              },
            },
          },
          responses: {
            "200": { description: "One answer per query, in order", content: { "application/json": { schema: { type: "array", items: ref("LookupAnswer") } } } },
            "400": errorResponse("Not a JSON array of strings or {ips: [...]}"),
            "401": errorResponse("Missing or wrong bearer token"),
            "413": errorResponse("More IPs than limits.max_records_per_request"),
          },
        },
      },
      "/livez": {
        get: {
          operationId: "livez",
          summary: "200 while the process runs",
          security: opsSecurity,
          responses: { "200": { description: "Alive", content: { "application/json": { schema: ref("Status") } } } },
        },
      },
      "/readyz": {
        get: {
          operationId: "readyz",
          summary: "200 once the stores are open; 503 while starting or shutting down",
          security: opsSecurity,
          responses: {
            "200": { description: "Ready", content: { "application/json": { schema: ref("Status") } } },
            "503": { description: "Not ready (not_ready, shutting_down)", content: { "application/json": { schema: ref("Status") } } },
          },
        },
      },
      "/metrics": {
        get: {
          operationId: "metrics",
          summary: "Prometheus metrics",
          security: opsSecurity,
          responses: { "200": { description: "Prometheus text format", content: { "text/plain": { schema: { type: "string" } } } } },
        },
      },
      "/": {
        get: {
          operationId: "statusRoot",
          summary: "The status page (same as /status)",
          security: opsSecurity,
          responses: { "200": { description: "HTML page that reloads itself", content: { "text/html": { schema: { type: "string" } } } } },
        },
      },
      "/status": {
        get: {
          operationId: "status",
          summary: "The status page: records per second, statuses, cache hit rates, ip-api budget and queue, forward next hop, dead letters, a map of recent answer locations",
          security: opsSecurity,
          responses: { "200": { description: "HTML page that reloads itself", content: { "text/html": { schema: { type: "string" } } } } },
        },
      },
      "/status.json": {
        get: {
          operationId: "statusJson",
          summary: "The status page's numbers, read from the same registry as /metrics",
          security: opsSecurity,
          responses: { "200": { description: "Status snapshot", content: { "application/json": { schema: ref("StatusSnapshot") } } } },
        },
      },
      "/openapi.json": {
        get: {
          operationId: "openapi",
          summary: "This description",
          security: opsSecurity,
          responses: { "200": { description: "OpenAPI 3.1 document", content: { "application/json": { schema: { type: "object" } } } } },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "auth.token (DNSGEO_AUTH_TOKEN); Firehose may send it as X-Amz-Firehose-Access-Key" } },
      schemas: {
        Record: { type: "object", description: "A DNS log record (Route 53 Resolver, DNS Firewall, Zeek, Sysmon 22, ECS, or any object with input.ip_fields)", additionalProperties: true },
        Error: {
          type: "object",
          required: ["code", "message"],
          properties: { code: { type: "string", enum: Object.keys(ERROR_CODES) }, message: { type: "string" } },
          additionalProperties: true,
        },
        Status: { type: "object", required: ["status"], properties: { status: { type: "string", enum: ["ok", "ready", "not_ready", "shutting_down"] } } },
        ForwardResult: {
          type: "object",
          required: ["records"],
          properties: {
            records: { type: "integer", description: "Records after enrichment" },
            delivered: { type: "integer" },
            dead_lettered: { type: "integer" },
            next_hop_status: { type: "integer" },
          },
        },
        StatusSnapshot: {
          type: "object",
          required: ["version", "node", "records", "cache", "provider", "forward", "dropped", "map"],
          properties: {
            version: { type: "string" },
            node: { type: "string" },
            commit: { type: "string" },
            records: { type: "object", additionalProperties: { type: "number" }, description: "dnsgeo_records_total by result" },
            recordsPerSecond: { type: "number", description: "Since the previous snapshot (absent on the first)" },
            cache: {
              type: "object",
              additionalProperties: { type: "object", properties: { lookups: { type: "number" }, hits: { type: "number" }, hitRate: { type: ["number", "null"] } } },
            },
            provider: { type: "object", properties: { budgetRemaining: { type: "number" }, queue: { type: "number" }, requests: { type: "object", additionalProperties: { type: "number" } } } },
            forward: {
              type: "object",
              properties: { requests: { type: "object", additionalProperties: { type: "number" } }, deadLetterRecords: { type: "number" }, deadLetterBytes: { type: "number" } },
            },
            dropped: { type: "object", additionalProperties: { type: "number" } },
            map: {
              type: "object",
              properties: {
                sampled: { type: "integer" },
                dots: {
                  type: "array",
                  items: { type: "object", properties: { lat: { type: "number" }, lon: { type: "number" }, count: { type: "integer" }, label: { type: "string" } } },
                },
              },
            },
          },
        },
        FirehoseAnswer: { type: "object", required: ["requestId", "timestamp"], properties: { requestId: { type: "string" }, timestamp: { type: "integer" } } },
        LookupAnswer: {
          type: "object",
          required: ["query", "status"],
          properties: {
            query: { type: "string" },
            ip: { type: "string", description: "Canonical IP" },
            status: { type: "string", enum: ["enriched", "partial", "pending", "skipped", "not_found", "invalid"] },
            reason: { type: "string" },
            stale: { type: "boolean" },
            geo: ref("GeoInfo"),
          },
        },
        GeoInfo: {
          type: "object",
          required: ["ip", "source", "fetchedAt"],
          properties: {
            ip: { type: "string" },
            countryCode: { type: "string", description: "ISO 3166-1 alpha-2" },
            country: { type: "string" },
            regionCode: { type: "string" },
            regionName: { type: "string" },
            city: { type: "string" },
            postalCode: { type: "string" },
            lat: { type: "number" },
            lon: { type: "number" },
            timezone: { type: "string" },
            continentCode: { type: "string" },
            asn: { type: "integer" },
            asOrg: { type: "string" },
            org: { type: "string" },
            isp: { type: "string" },
            source: { type: "string", description: "ip-api, mmdb, …" },
            fetchedAt: { type: "integer", description: "Epoch seconds" },
          },
        },
      },
    },
  };
}

let text: string | undefined;

/** The document as JSON text (built once). */
export function openApiText(): string {
  text ??= JSON.stringify(openApiDocument());
  return text;
}
