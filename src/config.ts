/**
 * One config schema for the YAML file and the `DNSGEO_*` environment.
 * Validated once at start and frozen. Every leaf has an environment variable:
 * its dotted path upper-cased with `.` → `_` and the `DNSGEO_` prefix
 * (`lookup.deadline_ms` → `DNSGEO_LOOKUP_DEADLINE_MS`, `dynamodb.table` →
 * `DNSGEO_DYNAMODB_TABLE`). The environment wins over the file.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { DnsgeoError } from "./errors.js";

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
const nonNegInt = z.number().int().min(0);
/** An extra HTTP header for a next hop or webhook, as "Name: value". */
const headerLine = z.string().regex(/^[^:\s][^:]*:/, 'expected "Name: value"');
/** `host:port`, e.g. `127.0.0.1:24224` or `[::1]:24224` (port 0: any free port). */
const hostPort = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+):\d{1,5}$/, "expected host:port");

const tlsSchema = z
  .object({
    /** PEM certificate file; TLS is on when cert_file and key_file are set. */
    cert_file: z.string().optional(),
    key_file: z.string().optional(),
    /** CA bundle used to verify client certificates (mTLS). */
    ca_file: z.string().optional(),
    /** `require`: clients must present a certificate signed by `ca_file`. */
    client_auth: z.enum(["none", "require"]).default("none"),
  })
  .prefault({});

/**
 * One policy rule (`policy.rules[]`, or an item of `policy.rules_file`). Every criterion
 * given must hold (AND); within one criterion any listed value may match (OR). The
 * answer criteria (all but `query_suffixes`) are checked per answer IP; a rule with
 * only `query_suffixes` matches the record by its query name. Patterns in `as_orgs`,
 * `isps`, `orgs`: exact text (case-insensitive), a glob with `*` (case-insensitive),
 * or `/regex/flags`. `regions`: `CC-RR` (country code and the region code of the geo
 * data, e.g. `US-VA`) or a region name (case-insensitive). CIDRs and patterns are
 * checked when the rules are compiled (src/policy/).
 */
export const policyRuleSchema = z
  .object({
    /** Names the rule in `dnsgeo.policy` and as the `rule` label of `dnsgeo_policy_matches_total`. */
    name: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "expected 1-64 characters of A-Z a-z 0-9 _ . : -"),
    /** Added to the record's `tags`. */
    tag: z.string().min(1).max(256),
    /** ISO 3166-1 alpha-2 codes. */
    countries: z.array(z.string().regex(/^[A-Za-z]{2}$/, "expected an ISO 3166-1 alpha-2 code")).min(1).optional(),
    regions: z.array(z.string().min(1)).min(1).optional(),
    asns: z.array(z.number().int().min(0).max(4294967295)).min(1).optional(),
    as_orgs: z.array(z.string().min(1)).min(1).optional(),
    isps: z.array(z.string().min(1)).min(1).optional(),
    orgs: z.array(z.string().min(1)).min(1).optional(),
    cidrs: z.array(z.string().min(1)).min(1).optional(),
    /** The query name ends with one of these labels (`example.com` matches `example.com` and `a.example.com`). */
    query_suffixes: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict()
  .refine(
    (r) => [r.countries, r.regions, r.asns, r.as_orgs, r.isps, r.orgs, r.cidrs, r.query_suffixes].some((c) => c !== undefined),
    "a rule needs at least one criterion (countries, regions, asns, as_orgs, isps, orgs, cidrs or query_suffixes)",
  );

export type PolicyRule = z.infer<typeof policyRuleSchema>;

export const configSchema = z
  .object({
    /** Directory for the SQLite cache file. */
    data_dir: z.string().min(1).default("./data"),
    http: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default("127.0.0.1"),
        port: port.default(8053),
        /** Largest request body accepted on the wire (compressed), bytes. */
        max_body_bytes: positiveInt.default(10 * 1024 * 1024),
        /** Largest body after decompression, bytes (zip bombs stop here). */
        max_decoded_bytes: positiveInt.default(64 * 1024 * 1024),
        /** Requests handled at once; past it: 503 + Retry-After. */
        max_inflight_requests: positiveInt.default(64),
        /** Seconds sent in Retry-After with 429/503. */
        retry_after_s: positiveInt.default(1),
        /**
         * Requests (HTTP and gRPC) that arrive after the event loop has been busy this long
         * without a break are refused at once (503 / RESOURCE_EXHAUSTED): they queued behind
         * a burst, and serving them would only add latency. Milliseconds; 0 turns it off.
         */
        overload_turn_ms: nonNegInt.default(100),
        /**
         * In-flight slots one client address (an IPv6 /64) may hold, so slow or greedy
         * clients at one address leave the other slots to everyone else. Half of the
         * default `max_inflight_requests`: more than one shipper needs.
         */
        max_inflight_per_client: positiveInt.default(32),
        /** Longest a request body may take to arrive, from its headers to its last byte; past it → 408 and the connection is closed. Milliseconds. */
        body_timeout_ms: positiveInt.default(30_000),
        /**
         * Bytes held for batches, process-wide: request bodies being read and enriched
         * (decoded size × 4) plus answers not yet written to their client. Past it new batch
         * requests get 503 + Retry-After at once; one client address may hold half of it.
         */
        max_buffered_bytes: positiveInt.default(256 * 1024 * 1024),
        /** Longest an answer may take to be written once it is ready (a client that does not read it); past it the connection is closed. Milliseconds. */
        send_timeout_ms: positiveInt.default(60_000),
        /**
         * Open connections at most. At the cap the connection idle the longest is closed
         * to make room; when none is idle, a few more are accepted for /livez, /readyz and
         * /metrics only. Keep it well below the process's open-file limit (checked at start).
         */
        max_connections: positiveInt.default(1024),
        /** A connection that sends no byte this long after it opens is closed, milliseconds; 0 turns it off. */
        first_byte_timeout_ms: nonNegInt.default(10_000),
        /**
         * A keep-alive connection with no request this long is closed, milliseconds. Longer
         * than the shippers' own idle timeouts (Fluent Bit 30 s, Vector 4 s), so the server is
         * never the side that closes a connection a client is about to reuse.
         */
        idle_timeout_ms: positiveInt.default(65_000),
        tls: tlsSchema,
      })
      .prefault({}),
    grpc: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default("127.0.0.1"),
        port: port.default(8054),
        max_message_bytes: positiveInt.default(16 * 1024 * 1024),
        /** Open connections at most; at the cap the oldest connection that has not sent a byte is closed to make room, else the new one is refused. */
        max_connections: positiveInt.default(1024),
        /** A connection that sends no byte this long after it opens is closed, milliseconds; 0 turns it off. */
        first_byte_timeout_ms: nonNegInt.default(10_000),
        /** A connection with no call open this long is closed (GOAWAY; clients reconnect on their next call), milliseconds. */
        idle_timeout_ms: positiveInt.default(120_000),
        /** Calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); clients queue the rest. */
        max_concurrent_streams: positiveInt.default(32),
        /** gRPC calls (and stream messages) handled at once, all connections together; past it → RESOURCE_EXHAUSTED with retry pushback. HTTP has its own (`http.max_inflight_requests`). */
        max_inflight_requests: positiveInt.default(64),
        /** Of those, most one client address (an IPv6 /64) may hold. */
        max_inflight_per_client: positiveInt.default(32),
        /** Seconds sent as `grpc-retry-pushback-ms` (in milliseconds) with a retryable refusal. */
        retry_after_s: positiveInt.default(1),
        /**
         * Answer bytes handed to HTTP/2 and not yet written to their clients, all gRPC calls
         * together. Past it new calls get RESOURCE_EXHAUSTED at once; a stream reads its next
         * request only after its last answer was written, so a client that does not read
         * holds up its own stream only.
         */
        max_unsent_answer_bytes: positiveInt.default(128 * 1024 * 1024),
        /** The same, for the calls of one connection: past it that connection's new calls get RESOURCE_EXHAUSTED, the others' are served. */
        max_unsent_answer_bytes_per_connection: positiveInt.default(32 * 1024 * 1024),
        /** Open health Watch streams at most, whatever `auth.protect_ops` says; past it Watch gets RESOURCE_EXHAUSTED. */
        max_watch_streams: positiveInt.default(64),
        /** An answer still not written to its client after this long closes the client's connection (it stopped reading), milliseconds. */
        send_timeout_ms: positiveInt.default(30_000),
        tls: tlsSchema,
      })
      .prefault({}),
    auth: z
      .object({
        /** Bearer token required on HTTP and gRPC when set. */
        token: z.string().min(1).optional(),
        /** Also require the token on /livez, /readyz, /metrics, /openapi.json and the status page. */
        protect_ops: z.boolean().default(false),
      })
      .prefault({}),
    limits: z
      .object({
        /** Records accepted in one request (envelope events count one each). */
        max_records_per_request: positiveInt.default(100_000),
      })
      .prefault({}),
    input: z
      .object({
        /** Dotted paths holding IPs in records of no known kind. */
        ip_fields: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
    output: z
      .object({
        format: z.enum(["ecs", "quicksight"]).default("ecs"),
        /** QuickSight: one row per public answer IP. */
        explode: z.boolean().default(false),
        geo_point: z.enum(["object", "string", "array", "wkt"]).default("object"),
        /** ECS: write destination.* for the primary answer. */
        destination: z.boolean().default(true),
      })
      .prefault({}),
    lookup: z
      .object({
        /** Longest a record waits for lookups, milliseconds. */
        deadline_ms: positiveInt.default(100),
        /** How long misses gather before a provider batch is sent, milliseconds. */
        batch_linger_ms: nonNegInt.default(10),
        /** IPs waiting for the provider in the background; oldest dropped first past it. */
        backfill_queue_max: positiveInt.default(100_000),
      })
      .prefault({}),
    cache: z
      .object({
        /** Positive entries stay fresh this long, seconds. */
        ttl_s: positiveInt.default(14 * 86400),
        /** Provider "fail" answers are cached this long, seconds. */
        negative_ttl_s: positiveInt.default(86400),
        /** Expired entries may still be served (stale: true) this long past expiry when the provider can't be reached, seconds. */
        stale_max_s: nonNegInt.default(30 * 86400),
        memory: z
          .object({
            enabled: z.boolean().default(true),
            max_entries: positiveInt.default(100_000),
          })
          .prefault({}),
        sqlite: z
          .object({
            enabled: z.boolean().default(true),
            /** File path; default `${data_dir}/dnsgeo.sqlite`. */
            path: z.string().min(1).optional(),
            /** Rows kept; past it expired rows then least recently used ones are pruned. */
            max_rows: positiveInt.default(2_000_000),
            /** Write-behind: most rows written per transaction. */
            write_batch: positiveInt.default(500),
            /** Write-behind: flush interval, milliseconds. */
            flush_interval_ms: positiveInt.default(200),
            /** Write-behind queue bound; past it the oldest pending writes are dropped and counted. */
            queue_max: positiveInt.default(50_000),
          })
          .prefault({}),
        redis: z
          .object({
            /** `redis://[user:password@]host:port[/db]` or `rediss://` (TLS); the Redis/Valkey tier is off until it is set. */
            url: z
              .string()
              .regex(/^rediss?:\/\/\S+$/, "expected a redis:// or rediss:// URL")
              .optional(),
            /** PEM CA bundle for `rediss://` servers signed by a private CA; default: the system's CAs. */
            ca_file: z.string().min(1).optional(),
            /** Prepended to each IP to form its key (several fleets may share one server). */
            key_prefix: z.string().default("dnsgeo:ip:"),
            connect_timeout_ms: positiveInt.default(1000),
            /** Longest one read or write may take, milliseconds; past it the tier is skipped for that batch. */
            command_timeout_ms: positiveInt.default(500),
            /** Write-behind: SETs per pipeline. */
            write_batch: positiveInt.default(500),
            /** Write-behind: flush interval, milliseconds. */
            flush_interval_ms: positiveInt.default(200),
            /** Write-behind queue bound; past it the oldest pending writes are dropped and counted. */
            queue_max: positiveInt.default(50_000),
            /** Keep a fleet-wide ip-api batch counter per window on the server. */
            fleet_budget: z.boolean().default(false),
          })
          .prefault({}),
      })
      .prefault({}),
    dynamodb: z
      .object({
        /** Table name; the DynamoDB tier is off until it is set. */
        table: z.string().min(3).max(255).optional(),
        /** Endpoint URL (DynamoDB Local, dynalite, a VPC endpoint). */
        endpoint: z.string().url().optional(),
        region: z.string().min(1).optional(),
        connect_timeout_ms: positiveInt.default(1000),
        request_timeout_ms: positiveInt.default(2000),
        /** Keep a per-minute fleet-wide ip-api batch counter in the table. */
        fleet_budget: z.boolean().default(false),
        /** Write-behind: flush interval, milliseconds (BatchWriteItem calls of 25 items). */
        flush_interval_ms: positiveInt.default(200),
        /** Write-behind queue bound; past it the oldest pending writes are dropped and counted. */
        queue_max: positiveInt.default(50_000),
      })
      .prefault({}),
    ipapi: z
      .object({
        enabled: z.boolean().default(true),
        /** Base URL; `https://pro.ip-api.com` when `key` is set. */
        url: z.string().url().optional(),
        /** Pro key (sent as ?key=); never logged. */
        key: z.string().min(1).optional(),
        fields: z
          .string()
          .default(
            "status,message,continentCode,country,countryCode,region,regionName,city,zip,lat,lon,timezone,isp,org,as,query",
          ),
        lang: z.enum(["en", "de", "es", "pt-BR", "fr", "ja", "zh-CN", "ru"]).default("en"),
        /** IPs per POST /batch (ip-api allows 100). */
        batch_size: z.number().int().min(1).max(100).default(100),
        /** Batch requests allowed per window (free: 15 per 60 s). */
        requests_per_window: positiveInt.default(15),
        window_s: positiveInt.default(60),
        timeout_ms: positiveInt.default(5000),
      })
      .prefault({}),
    mmdb: z
      .object({
        enabled: z.boolean().default(true),
        /** Override the bundled DB-IP city files (MaxMind DB format). */
        city_v4_path: z.string().optional(),
        city_v6_path: z.string().optional(),
        /** Override the bundled ASN CSV files (start,end,asn,org). */
        asn_v4_path: z.string().optional(),
        asn_v6_path: z.string().optional(),
      })
      .prefault({}),
    resolve: z
      .object({
        mode: z.enum(["off", "missing", "always"]).default("off"),
        /** DNS servers ("ip" or "ip:port"); empty: the system's. */
        servers: z.array(z.string().min(1)).default([]),
        timeout_ms: positiveInt.default(1000),
        concurrency: positiveInt.default(16),
        cache_max: positiveInt.default(10_000),
      })
      .prefault({}),
    forward: z
      .object({
        /** Next hop for POST /v1/forward; only ever taken from config. */
        url: z.string().url().optional(),
        /** Body framing sent to the next hop; `same`: as received. */
        framing: z.enum(["same", "ndjson", "array"]).default("same"),
        /** Content-Type sent; Fluent Bit in_http needs application/json. */
        content_type: z.string().min(1).optional(),
        compression: z.enum(["none", "gzip", "deflate", "zstd", "snappy"]).default("none"),
        timeout_ms: positiveInt.default(10_000),
        /** Extra headers as "Name: value" strings. */
        headers: z.array(headerLine).default([]),
        /**
         * Largest body sent to the next hop, counted before compression (so also after the
         * next hop decompresses it); larger batches go out in several requests. The default
         * stays under Fluent Bit in_http's default `buffer_max_size` (4M).
         */
        max_body_bytes: positiveInt.default(3 * 1024 * 1024),
        dead_letter: z
          .object({
            /** NDJSON file of the records the next hop refused; default `${data_dir}/forward-dead-letter.ndjson`. */
            path: z.string().min(1).optional(),
            /** Largest size of that file; when a refused record does not fit, the batch is answered 503. */
            max_bytes: positiveInt.default(256 * 1024 * 1024),
          })
          .prefault({}),
      })
      .prefault({}),
    fluent: z
      .object({
        /** `host:port` of the Fluent forward protocol listener; off when unset. */
        listen: hostPort.optional(),
        /** `host:port` of the `in_forward` (Fluent Bit, Fluentd) that gets the enriched events; required with `listen`. */
        next_hop: hostPort.optional(),
        /** Longest wait for the next hop's ack of one message, milliseconds; past it the shipper gets no ack and sends again. */
        timeout_ms: positiveInt.default(10_000),
        /** Largest forward message accepted on the wire, also the cap of one connection's unread bytes; past it the connection is closed. */
        max_message_bytes: positiveInt.default(16 * 1024 * 1024),
        /** Largest CompressedPackedForward entries after gunzip, bytes. */
        max_decoded_bytes: positiveInt.default(64 * 1024 * 1024),
        /**
         * Largest message sent to the next hop, bytes; larger batches go out as several
         * messages. Under Fluent Bit in_forward's default `buffer_max_size` (6M).
         */
        max_send_bytes: positiveInt.default(4 * 1024 * 1024),
        /** Open connections at most; at the cap the one idle longest (no message in work) is closed to make room, as on the HTTP port. */
        max_connections: positiveInt.default(1024),
        /** A connection that has sent no byte this long after it opened is closed, milliseconds; 0: never. */
        first_byte_timeout_ms: nonNegInt.default(10_000),
        /** Longest wait for the rest of a message once its first bytes came, milliseconds; past it the connection is closed, nothing acked. */
        message_timeout_ms: positiveInt.default(30_000),
        /** Messages enriched and sent on at once, all connections together; past it a message's connection is closed without an ack and the shipper sends it again. */
        max_inflight_messages: positiveInt.default(64),
        /**
         * Bytes of received messages (whole or in part) held at once, all connections
         * together; one client address may hold half. A connection that needs more is
         * closed without an ack, and the shipper sends again.
         */
        max_buffered_bytes: positiveInt.default(256 * 1024 * 1024),
        /**
         * Shared key of the forward protocol's handshake (HELO/PING/PONG): a client must
         * prove it knows it before any message is read (Fluent Bit out_forward `shared_key`).
         */
        shared_key: z.string().min(1).optional(),
        /** Hostname dnsgeo gives in the handshake's PONG. */
        self_hostname: z.string().min(1).default("dnsgeo"),
        /** TLS of the listener (out_forward `tls on`), as `http.tls`. */
        tls: tlsSchema,
        /**
         * Shared key the next hop's in_forward expects (its `shared_key`): dnsgeo answers its
         * HELO with a PING (hostname `self_hostname`) and checks that the PONG proves the key too.
         */
        next_hop_shared_key: z.string().min(1).optional(),
        /** TLS to the next hop (in_forward `tls on`). */
        next_hop_tls: z
          .object({
            enabled: z.boolean().default(false),
            /** CA bundle that signed the next hop's certificate; Node's bundled CAs when unset. */
            ca_file: z.string().optional(),
            /** Client certificate and key, for a next hop that asks for one. */
            cert_file: z.string().optional(),
            key_file: z.string().optional(),
            /** Check the next hop's certificate and name; turn off only for a throwaway setup. */
            verify: z.boolean().default(true),
            /** Name the certificate must carry (and SNI); the next hop's host when unset. */
            server_name: z.string().optional(),
          })
          .prefault({}),
      })
      .prefault({}),
    policy: z
      .object({
        /** Rules in the config itself; those of `rules_file` follow them. */
        rules: z.array(policyRuleSchema).default([]),
        /** YAML or JSON file holding a list of rules (or `{rules: [...]}`); reloaded on SIGHUP and when it changes. */
        rules_file: z.string().min(1).optional(),
        /** Watch `rules_file` and reload it when it changes (SIGHUP reloads either way). */
        watch: z.boolean().default(true),
        alert: z
          .object({
            /** Webhook: one POST per (source address, rule) per `dedup_s`; off when unset. */
            url: z.string().url().optional(),
            dedup_s: positiveInt.default(3600),
            /** Alerts waiting to be sent; past it new ones are dropped and counted. */
            queue_max: positiveInt.default(1000),
            timeout_ms: positiveInt.default(5000),
            /** Attempts after the first, with backoff. */
            retries: nonNegInt.default(3),
            /** Extra headers as "Name: value" strings. */
            headers: z.array(headerLine).default([]),
          })
          .prefault({}),
      })
      .prefault({}),
    otlp: z
      .object({
        /**
         * URL of the next OTLP/HTTP hop that gets the enriched logs as protobuf, e.g. a Collector's
         * otlp receiver or Fluent Bit's opentelemetry input (`http://127.0.0.1:4318/v1/logs`;
         * `/v1/logs` is added to a URL without a path). While unset, POST /v1/logs and
         * LogsService/Export are refused with 503 / UNAVAILABLE (DNSGEO_OTLP_NOT_CONFIGURED).
         */
        next_hop: z.string().regex(/^https?:\/\/\S+$/i, "expected an http:// or https:// URL").optional(),
        /**
         * Longest wait for the next hop's answer to one request, milliseconds; past it the shipper gets 503 / UNAVAILABLE and sends again.
         * Also how long a later part of a request that failed is tried again, once earlier parts were delivered.
         */
        timeout_ms: positiveInt.default(10_000),
        /** Content-Encoding of what is sent to the next hop. */
        compression: z.enum(["none", "gzip"]).default("none"),
        /** Extra headers sent to the next hop, as "Name: value" strings (its own token, say). */
        headers: z.array(headerLine).default([]),
        /**
         * Largest request sent to the next hop (protobuf, before compression); larger ones go
         * out as several, cut between log records. Under Fluent Bit's opentelemetry input's
         * default buffer_max_size (4M): enrichment makes a request 2-4 times larger.
         */
        max_send_bytes: positiveInt.default(3 * 1024 * 1024),
        /**
         * Requests to the next hop at once, all shippers together; the rest wait their turn
         * (within the shipper's own timeout). A Fluent Bit opentelemetry input swamped by many
         * parallel requests times them out (its 10 s IO timeout).
         */
        max_concurrent_requests: positiveInt.default(4),
        /** Also set attributes named after the OpenTelemetry semantic conventions (geo.location.lat, geo.country.iso_code, ...) and dnsgeo.* for AS, ISP and ORG. */
        semconv_attributes: z.boolean().default(false),
      })
      .prefault({}),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
      })
      .prefault({}),
    shutdown: z
      .object({
        /** Longest wait for in-flight work and background lookups on SIGTERM, milliseconds. */
        timeout_ms: positiveInt.default(10_000),
      })
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
/** Input shape (everything optional), for tests and embedding. */
export type ConfigInput = z.input<typeof configSchema>;

/** A config problem; the message names the key and what is allowed. */
export class ConfigError extends DnsgeoError {
  constructor(message: string) {
    super("DNSGEO_CONFIG_INVALID", undefined, { message });
    this.name = "ConfigError";
  }
}

/** `"Name: value"` header lines (checked by the schema) as a header object, names in lower case. */
export function headerObject(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

/** `json`: a list of objects (`policy.rules`), given in the environment as JSON text. */
type LeafType = "string" | "number" | "boolean" | "array" | "json";

/** Unwraps default/optional/prefault/nullable to the base schema (zod's public `def`). */
function baseOf(s: z.ZodType): z.ZodType {
  let cur: z.ZodType = s;
  for (;;) {
    if (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional || cur instanceof z.ZodPrefault || cur instanceof z.ZodNullable) cur = cur.def.innerType as z.ZodType;
    else return cur;
  }
}

function typeOf(s: z.ZodType): string {
  return s.def.type;
}

/** Every leaf of the schema: dotted path → type. */
export function configLeaves(): Map<string, LeafType> {
  const out = new Map<string, LeafType>();
  const walk = (s: z.ZodType, path: string[]): void => {
    const b = baseOf(s);
    const t = typeOf(b);
    if (t === "object") {
      for (const [k, v] of Object.entries((b as z.ZodObject).shape)) walk(v as z.ZodType, [...path, k]);
      return;
    }
    const leaf: LeafType =
      t === "number" ? "number" : t === "boolean" ? "boolean" : t === "array" ? (typeOf(baseOf((b as z.ZodArray).def.element as z.ZodType)) === "object" ? "json" : "array") : "string";
    out.set(path.join("."), leaf);
  };
  walk(configSchema, []);
  return out;
}

/** Environment variable name of a dotted config path. */
export function envName(path: string): string {
  return "DNSGEO_" + path.replace(/[.-]/g, "_").toUpperCase();
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i] as string;
    const next = cur[k];
    if (typeof next !== "object" || next === null || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[path[path.length - 1] as string] = value;
}

function envValue(name: string, raw: string, type: LeafType): unknown {
  switch (type) {
    case "number": {
      const n = Number(raw.trim());
      if (raw.trim() === "" || !Number.isFinite(n)) throw new ConfigError(`${name}: expected a number, got "${raw}"`);
      return n;
    }
    case "boolean": {
      const v = raw.trim().toLowerCase();
      if (["true", "1", "yes", "on"].includes(v)) return true;
      if (["false", "0", "no", "off"].includes(v)) return false;
      throw new ConfigError(`${name}: expected true or false, got "${raw}"`);
    }
    case "json":
      try {
        return JSON.parse(raw) as unknown;
      } catch (e) {
        throw new ConfigError(`${name}: expected JSON text, ${(e as Error).message}`);
      }
    case "array":
      return raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    default:
      return raw;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function formatIssues(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const key = i.path.join(".") || "(root)";
      const extra =
        i.code === "unrecognized_keys"
          ? `unknown key(s) ${(i as { keys: string[] }).keys.map((k) => (key === "(root)" ? k : `${key}.${k}`)).join(", ")}`
          : i.message;
      const env = key !== "(root)" && configLeaves().has(key) ? ` (env ${envName(key)})` : "";
      return `config key ${key}${env}: ${extra}`;
    })
    .join("; ");
}

export interface LoadOptions {
  /** YAML file path. */
  file?: string;
  /** Environment (defaults to none: only `main.ts` passes process.env). */
  env?: Record<string, string | undefined>;
  /** Values that win over file and env (tests, CLI flags). */
  overrides?: ConfigInput;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    if (v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)) {
      out[k] = merge(b as Record<string, unknown>, v as Record<string, unknown>);
    } else if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * Builds the frozen config from a YAML file, the environment and overrides
 * (in increasing precedence). Throws ConfigError naming the key on any problem.
 */
export function loadConfig(opts: LoadOptions = {}): Readonly<Config> {
  let fromFile: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`config file ${opts.file} is not valid YAML: ${(e as Error).message}`);
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError(`config file ${opts.file}: expected a mapping at the top`);
      fromFile = doc as Record<string, unknown>;
    }
  }
  const fromEnv: Record<string, unknown> = {};
  const env = opts.env ?? {};
  const leaves = configLeaves();
  // DNSGEO_CONFIG names the YAML file (read by main.ts), not a key.
  const known = new Set<string>(["DNSGEO_CONFIG"]);
  for (const [path, type] of leaves) {
    const name = envName(path);
    known.add(name);
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    setPath(fromEnv, path.split("."), envValue(name, raw, type));
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith("DNSGEO_") && !known.has(name) && env[name] !== undefined) {
      throw new ConfigError(`unknown environment variable ${name}`);
    }
  }
  const merged = merge(merge(fromFile, fromEnv), (opts.overrides ?? {}));
  const res = configSchema.safeParse(merged);
  if (!res.success) throw new ConfigError(formatIssues(res.error));
  return deepFreeze(res.data);
}

/** Path of the SQLite file under the config. */
export function sqlitePath(cfg: Config): string {
  return cfg.cache.sqlite.path ?? `${cfg.data_dir.replace(/\/+$/, "")}/dnsgeo.sqlite`;
}

/** The forward mode's dead-letter file: `forward.dead_letter.path` or `${data_dir}/forward-dead-letter.ndjson`. */
export function deadLetterPath(cfg: Readonly<Config>): string {
  return cfg.forward.dead_letter.path ?? `${cfg.data_dir.replace(/\/+$/, "")}/forward-dead-letter.ndjson`;
}
