/**
 * The HTTP transport (node:http, or node:https when `http.tls` is set).
 *
 * Routes: POST /v1/enrich, POST /v1/forward, GET /v1/lookup/{ip}, POST /v1/lookup,
 * GET /livez, GET /readyz, GET /metrics. As everywhere in dnsgeo (docs/architecture.md): a batch that
 * could succeed later is never refused with a 4xx (shippers drop those); overload is
 * refused at once with 503 + Retry-After before the body is read.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { DnsgeoError, ERROR_CODES, isRetryable, type ErrorCode } from "../errors.js";
import { requestPathFor, type Refusal } from "./request-path.js";
import { canCompressZstd, compress, compressAsync, decompress, decompressAsync, gzipSizeHint, type Compression } from "../codecs/compression.js";
import { encodeItems, encodeItemsSliced, splitBody, splitBodySliced } from "../pipeline/framing.js";
import { SLICED_BODY_BYTES, TimeSlices, type Pause } from "../pipeline/slices.js";
import type { EnrichOptions } from "../pipeline/enrich.js";
import { firehoseRequest } from "../pipeline/parse/firehose.js";
import type { Decoded, Framing } from "../pipeline/types.js";
import { createSecretCheck } from "./auth.js";
import type { Forwarder } from "./forwarder.js";
import type { InflightLimiter, LoopTurnGuard } from "./limits.js";
import { OutputBuffers } from "./output-buffers.js";
import { httpsOptions, type TlsMaterial } from "./tls.js";
import type { TransportApp } from "./transport-app.js";
import { ConnectionLimiter, firstByteListener, LISTEN_BACKLOG } from "./connections.js";
import { openApiText } from "./openapi.js";
import type { OtlpService } from "./otlp-service.js";
import { statusHtml, statusSnapshot } from "../observability/status.js";
import { ByteBudget, clientKey, Gate, type ByteLease } from "./byte-budget.js";

/** Connections accepted past `http.max_connections` when none is idle; they serve the ops routes only. */
export const OPS_RESERVED_CONNECTIONS = 8;

/** The routes, named in 404/405 answers. */
export const HTTP_ROUTES: readonly string[] = [
  "POST /v1/enrich",
  "POST /v1/forward",
  "POST /v1/logs",
  "GET /v1/lookup/{ip}",
  "POST /v1/lookup",
  "GET /livez",
  "GET /readyz",
  "GET /metrics",
  "GET /openapi.json",
  "GET /",
  "GET /status",
  "GET /status.json",
];

type RouteName = "enrich" | "forward" | "otlp_logs" | "lookup" | "livez" | "readyz" | "metrics" | "openapi" | "status" | "statusjson" | "other";

const ALLOW: Record<Exclude<RouteName, "other">, string> = {
  enrich: "POST",
  forward: "POST",
  otlp_logs: "POST",
  lookup: "GET, POST",
  livez: "GET, HEAD",
  readyz: "GET, HEAD",
  metrics: "GET, HEAD",
  openapi: "GET, HEAD",
  status: "GET, HEAD",
  statusjson: "GET, HEAD",
};

const CONTENT_TYPE: Record<Framing, string> = {
  ndjson: "application/x-ndjson",
  array: "application/json",
  object: "application/json",
};


export interface HttpServerDeps {
  app: TransportApp;
  /** Shared with the gRPC server: one in-flight budget per process. */
  limiter: InflightLimiter;
  /** Shared with the gRPC server: refuses requests that queued behind a burst. */
  guard?: LoopTurnGuard;
  /** Present when `forward.url` is set. */
  forwarder?: Forwarder;
  /** OTLP logs (`POST /v1/logs`); without it the route answers DNSGEO_OTLP_NOT_CONFIGURED. */
  otlp?: OtlpService;
  tls?: TlsMaterial;
}

export interface HttpTransport {
  /** Node's HTTP server. It never binds: dnsgeo's TCP listener hands it each connection at its first byte. */
  readonly server: http.Server;
  /** Binds `http.host:http.port`; resolves to "host:port". */
  listen(): Promise<string>;
  /** "host:port" once listening. */
  address(): string | undefined;
  /** Stops accepting, lets in-flight requests finish (up to `timeoutMs`), then closes every connection. Idempotent. */
  close(timeoutMs: number): Promise<void>;
}

class Aborted extends Error {}

/**
 * Reads a body, counting bytes; rejects with DNSGEO_BODY_TOO_LARGE past `max`,
 * DNSGEO_BODY_TIMEOUT when the whole body has not come within `timeoutMs` (a client
 * trickling a byte at a time would otherwise hold its in-flight slot for minutes),
 * DNSGEO_OVERLOADED when `lease` cannot hold the bytes read, Aborted when the client goes away.
 */
function readBody(req: http.IncomingMessage, max: number, timeoutMs: number, lease?: ByteLease): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let done = false;
    const fail = (e: Error): void => {
      done = true;
      clearTimeout(timer);
      req.off("data", onData);
      req.pause();
      reject(e);
    };
    const timer = setTimeout(() => {
      if (!done) fail(new DnsgeoError("DNSGEO_BODY_TIMEOUT", `${n} bytes in ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (c: Buffer): void => {
      n += c.length;
      if (n > max) {
        fail(new DnsgeoError("DNSGEO_BODY_TOO_LARGE", `more than http.max_body_bytes (${max}) on the wire`));
        return;
      }
      if (lease !== undefined && !lease.resize(n)) {
        fail(new DnsgeoError("DNSGEO_OVERLOADED", "http.max_buffered_bytes reached"));
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.once("end", () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, n));
    });
    req.once("error", () => {
      if (!done) reject(new Aborted());
      done = true;
      clearTimeout(timer);
    });
    req.once("close", () => {
      if (!done) reject(new Aborted());
      done = true;
      clearTimeout(timer);
    });
  });
}

/**
 * Bytes a decoded body is counted as while it is parsed and enriched: the parsed records
 * and their output pieces take a few times the text they came from.
 */
const WORKING_SET_FACTOR = 4;

/** The HTTP statuses an OTLP/HTTP exporter retries (OTLP spec, "Retryable Response Codes"). */
const OTLP_RETRYABLE_HTTP: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** Picks a response coding from Accept-Encoding (q-values honoured; snappy and zstd only when named). */
export function negotiateEncoding(header: string | undefined): Compression {
  if (!header) return "none";
  let best: Compression = "none";
  let bestQ = 0;
  let bestRank = 99;
  for (const part of header.split(",")) {
    const [nameRaw, ...params] = part.split(";");
    const name = (nameRaw ?? "").trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=");
      if ((k ?? "").trim() === "q") q = Number((v ?? "").trim());
    }
    if (!(q > 0)) continue;
    let enc: Compression | undefined;
    let rank = 99;
    if (name === "gzip" || name === "x-gzip") [enc, rank] = ["gzip", 0];
    else if (name === "deflate") [enc, rank] = ["deflate", 1];
    else if (name === "zstd" && canCompressZstd) [enc, rank] = ["zstd", 2];
    else if (name === "snappy") [enc, rank] = ["snappy", 3];
    if (enc && (q > bestQ || (q === bestQ && rank < bestRank))) {
      best = enc;
      bestQ = q;
      bestRank = rank;
    }
  }
  return best;
}

function routeOf(path: string): RouteName {
  switch (path) {
    case "/v1/enrich":
      return "enrich";
    case "/v1/forward":
      return "forward";
    case "/v1/logs":
      return "otlp_logs";
    case "/v1/lookup":
      return "lookup";
    case "/livez":
      return "livez";
    case "/readyz":
      return "readyz";
    case "/metrics":
      return "metrics";
    case "/openapi.json":
      return "openapi";
    case "/":
    case "/status":
      return "status";
    case "/status.json":
      return "statusjson";
    default:
      return path.startsWith("/v1/lookup/") ? "lookup" : "other";
  }
}

/** Builds the HTTP transport; call `listen()` to bind. */
export function createHttpServer(deps: HttpServerDeps): HttpTransport {
  const { app, limiter, forwarder } = deps;
  const cfg = app.config.http;
  const retryAfter = String(cfg.retry_after_s);
  const protectOps = app.config.auth.protect_ops;
  const firehoseKeyCheck = createSecretCheck(app.config.auth.token);
  const logger = app.logger;
  const metrics = app.metrics;
  const requestPath = requestPathFor(app, "http", limiter, deps.guard);
  /** The enrich options of a query string (`format`, `explode`). */
  const queryOptions = (qs: string): EnrichOptions => {
    if (qs === "") return {};
    const p = new URLSearchParams(qs);
    return requestPath.options(p.get("format"), p.get("explode"));
  };
  // One address may hold half of the byte budget: the other half stays for everyone else.
  const budget = new ByteBudget(cfg.max_buffered_bytes, Math.floor(cfg.max_buffered_bytes / 2));
  const bigBatches = new Gate(1);

  /** The large-batch half of `decodeBody`: counted, parsed in slices; `release` is handed on for the caller to call once the answer is made. */
  const decodeLarge = async (raw: Buffer, contentType: string | undefined, wire: number, lease: ByteLease | undefined, release: () => void): Promise<Decoded & { pause?: Pause; release?: () => void }> => {
    if (lease !== undefined && !lease.resize(wire + raw.length * WORKING_SET_FACTOR)) {
      throw new DnsgeoError("DNSGEO_OVERLOADED", "http.max_buffered_bytes reached");
    }
    const pause = new TimeSlices();
    const decoded = await splitBodySliced(raw, contentType, pause);
    requestPath.checkCount(decoded.items.length);
    // Without a lease (not /v1/enrich) nobody would give the place back later.
    if (lease === undefined) {
      release();
      return Object.assign(decoded, { pause });
    }
    return Object.assign(decoded, { pause, release });
  };
  const refusalLog = requestPath.refusalLog;

  let listening = false;
  let closed: Promise<void> | undefined;
  let addr: string | undefined;

  const observe = (route: RouteName, start: number): void => {
    metrics.requestDuration.observe({ transport: "http", route }, (performance.now() - start) / 1000);
  };

  const connections = new ConnectionLimiter({
    transport: "http",
    maxConnections: cfg.max_connections,
    firstByteTimeoutMs: cfg.first_byte_timeout_ms,
    reserved: OPS_RESERVED_CONNECTIONS,
    evict: "request",
    metrics,
    logger,
  });

  // Bodies of /v1/enrich answers are written into reused buffers (see OutputBuffers).
  const outputBuffers = new OutputBuffers();

  /** `written`: called once `body` is no longer needed (written to the socket, or not sent at all). */
  const send = (res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: Buffer | string, written?: () => void): void => {
    if (res.headersSent || res.destroyed) {
      if (!res.writableEnded) res.end();
      written?.();
      return;
    }
    if (requestPath.closing) headers.connection = "close";
    headers["content-length"] = typeof body === "string" ? Buffer.byteLength(body) : body.length;
    res.writeHead(status, headers);
    // 'finish' comes after the socket has written the last byte; when the connection
    // breaks first it never comes, and a leased buffer is left to the GC.
    if (written) res.end(body, written);
    else res.end(body);
    // Whatever the socket could not take at once waits in memory until the client reads it.
    const sock = res.socket;
    if (sock !== null && sock.writableLength > 0 && !res.writableFinished) {
      const timer = setTimeout(() => {
        refusalLog.log("warn", "send_timeout", { bytes: sock.writableLength }, "closing a connection whose client did not read its answer within http.send_timeout_ms");
        sock.destroy();
      }, cfg.send_timeout_ms);
      timer.unref();
      res.once("close", () => clearTimeout(timer));
    }
  };

  const sendError = (
    res: http.ServerResponse,
    code: ErrorCode,
    message: string,
    extra?: Record<string, unknown>,
    status?: number,
    headers: http.OutgoingHttpHeaders = {},
  ): void => {
    const httpStatus = status ?? ERROR_CODES[code].http;
    if (isRetryable(code) && (httpStatus === 503 || httpStatus === 429)) headers["retry-after"] = retryAfter;
    headers["content-type"] = "application/json";
    send(res, httpStatus, headers, JSON.stringify(Object.assign({ code, message }, extra)));
  };

  /**
   * `otlp`: the answer goes to an OTLP/HTTP exporter, which retries only 429, 502, 503 and
   * 504 (OTLP spec; Fluent Bit's opentelemetry output drops the chunk on any other status),
   * so a retryable error with another status (408 body timeout, 500) is answered 503.
   */
  const sendFailure = (res: http.ServerResponse, e: unknown, extra?: Record<string, unknown>, otlp = false): void => {
    const err = requestPath.failure(e);
    const status = otlp && isRetryable(err.code) && !OTLP_RETRYABLE_HTTP.has(err.http) ? 503 : err.http;
    sendError(res, err.code, err.message, extra, status);
  };

  /** A refusal at admission (already counted by the request path). */
  const sendRefusal = (res: http.ServerResponse, r: Refusal): void => sendError(res, r.code, r.message);

  /**
   * Reads and decodes a batch body. With `lease`, its bytes are counted in the byte budget
   * (a body too large for what is left is refused with 503 before it is parsed), and a
   * large body gets `pause`: its parse, enrichment and encoding then run in slices.
   */
  const decodeBody = async (req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean, lease?: ByteLease): Promise<Decoded & { pause?: Pause; release?: () => void }> => {
    const cl = req.headers["content-length"];
    if (cl !== undefined && Number(cl) > cfg.max_body_bytes) {
      throw new DnsgeoError("DNSGEO_BODY_TOO_LARGE", `Content-Length ${cl} is over http.max_body_bytes (${cfg.max_body_bytes})`);
    }
    if (expectContinue) res.writeContinue();
    const body = await readBody(req, cfg.max_body_bytes, cfg.body_timeout_ms, lease);
    const decodeOpts: { contentEncoding?: string; maxDecodedBytes: number } = { maxDecodedBytes: cfg.max_decoded_bytes };
    const ce = req.headers["content-encoding"];
    if (ce !== undefined) decodeOpts.contentEncoding = ce;
    let raw: Buffer;
    if (body.length >= SLICED_BODY_BYTES / 16) {
      const hint = gzipSizeHint(body, ce, cfg.max_decoded_bytes);
      if (lease !== undefined && hint !== undefined && !lease.resize(body.length + hint * WORKING_SET_FACTOR)) {
        throw new DnsgeoError("DNSGEO_OVERLOADED", "http.max_buffered_bytes reached");
      }
      // One large batch at a time, from inflating to writing its answer out: it is CPU work
      // on one thread either way, and each one's parsed records take several times its size.
      const release = await bigBatches.acquire();
      try {
        raw = await decompressAsync(body, decodeOpts);
        if (raw.length < SLICED_BODY_BYTES) release();
        else return await decodeLarge(raw, req.headers["content-type"], body.length, lease, release);
      } catch (e) {
        release();
        throw e;
      }
    } else raw = decompress(body, decodeOpts);
    if (raw.length >= SLICED_BODY_BYTES) {
      const release = await bigBatches.acquire();
      try {
        return await decodeLarge(raw, req.headers["content-type"], body.length, lease, release);
      } catch (e) {
        release();
        throw e;
      }
    }
    if (lease !== undefined && !lease.resize(body.length + raw.length * WORKING_SET_FACTOR)) {
      throw new DnsgeoError("DNSGEO_OVERLOADED", "http.max_buffered_bytes reached");
    }
    const decoded = splitBody(raw, req.headers["content-type"]);
    requestPath.checkCount(decoded.items.length);
    return decoded;
  };

  const firehoseOf = (req: http.IncomingMessage, decoded: Decoded): { requestId: string; timestamp: number } | undefined => {
    const header = req.headers["x-amz-firehose-request-id"];
    const fromBody = decoded.framing === "object" && decoded.items.length === 1 && decoded.items[0]?.kind === "json" ? firehoseRequest(decoded.items[0].value) : undefined;
    if (typeof header === "string" && header !== "") return { requestId: header, timestamp: fromBody?.timestamp ?? 0 };
    return fromBody;
  };

  const handleEnrich = async (req: http.IncomingMessage, res: http.ServerResponse, qs: string, expectContinue: boolean, bytes: ByteLease): Promise<void> => {
    const opts = queryOptions(qs);
    const decoded = await decodeBody(req, res, expectContinue, bytes);
    try {
      await enrichAndSend(req, res, decoded, opts, bytes);
    } finally {
      decoded.release?.();
    }
  };

  const enrichAndSend = async (req: http.IncomingMessage, res: http.ServerResponse, decoded: Decoded & { pause?: Pause }, opts: EnrichOptions, bytes: ByteLease): Promise<void> => {
    const pause = decoded.pause;
    if (pause !== undefined) opts.pause = pause;
    const out = await app.enricher.enrichDecoded(decoded, opts);
    let leased: Buffer | undefined;
    const into = (n: number): Buffer | undefined => (leased = outputBuffers.take(n));
    let body = pause === undefined ? encodeItems(out.framing, out.items, into) : await encodeItemsSliced(out.framing, out.items, pause, into);
    const headers: http.OutgoingHttpHeaders = { "content-type": CONTENT_TYPE[out.framing], vary: "Accept-Encoding" };
    const enc = negotiateEncoding(req.headers["accept-encoding"]);
    if (enc !== "none") {
      // The compressors read the body into a buffer of their own (a large one on the thread pool).
      body = pause === undefined ? compress(body, enc) : await compressAsync(body, enc);
      headers["content-encoding"] = enc;
      if (leased) outputBuffers.give(leased);
      leased = undefined;
    }
    // Held until the response closes: an answer its client does not read stays in memory.
    bytes.hold(body.length);
    const lease = leased;
    send(res, 200, headers, body, lease ? () => outputBuffers.give(lease) : undefined);
  };

  const handleForward = async (req: http.IncomingMessage, res: http.ServerResponse, qs: string, expectContinue: boolean): Promise<void> => {
    if (!forwarder) throw new DnsgeoError("DNSGEO_FORWARD_NOT_CONFIGURED");
    const opts = queryOptions(qs);
    const decoded = await decodeBody(req, res, expectContinue);
    const firehose = firehoseOf(req, decoded);
    // A large batch is enriched in slices too, as on /v1/enrich.
    if (decoded.pause !== undefined) opts.pause = decoded.pause;
    const out = await app.enricher.enrichDecoded(decoded, opts);
    if (out.items.length === 0) {
      // Nothing to pass on (a CloudWatch CONTROL_MESSAGE, an empty body): next hops such as
      // Fluent Bit in_http refuse an empty payload with 400, so the batch is done here.
      send(res, 200, { "content-type": "application/json" }, JSON.stringify(firehose ? { requestId: firehose.requestId, timestamp: Date.now() } : { records: 0 }));
      return;
    }
    // One object cannot carry an expanded envelope; send such batches as NDJSON unless a framing is configured.
    const framing: Framing = out.framing === "object" && out.items.length !== 1 ? "ndjson" : out.framing;
    const result = await forwarder.send(out.items, framing);
    const fh = firehose ? { requestId: firehose.requestId, timestamp: Date.now() } : undefined;
    if (result.ok) {
      const summary = { records: out.items.length, delivered: result.delivered, dead_lettered: result.deadLettered, next_hop_status: result.status };
      send(res, 200, { "content-type": "application/json" }, JSON.stringify(fh ?? summary));
      return;
    }
    const extra: Record<string, unknown> = fh ? { requestId: fh.requestId, timestamp: fh.timestamp, errorMessage: result.detail } : {};
    sendError(res, "DNSGEO_NEXT_HOP_UNAVAILABLE", result.detail, Object.assign(extra, result.status ? { next_hop_status: result.status } : {}));
  };

  /** POST /v1/logs (OTLP/HTTP): the body read and counted as /v1/enrich's, then handed to the OTLP service. */
  const handleOtlp = async (req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean, bytes: ByteLease): Promise<void> => {
    if (!deps.otlp) throw new DnsgeoError("DNSGEO_OTLP_NOT_CONFIGURED");
    const cl = req.headers["content-length"];
    if (cl !== undefined && Number(cl) > cfg.max_body_bytes) {
      throw new DnsgeoError("DNSGEO_BODY_TOO_LARGE", `Content-Length ${cl} is over http.max_body_bytes (${cfg.max_body_bytes})`);
    }
    if (expectContinue) res.writeContinue();
    const body = await readBody(req, cfg.max_body_bytes, cfg.body_timeout_ms, bytes);
    // Only what Content-Encoding names is undone: a protobuf body is never sniffed.
    const decodeOpts = { contentEncoding: req.headers["content-encoding"] ?? "identity", maxDecodedBytes: cfg.max_decoded_bytes };
    const raw = body.length >= SLICED_BODY_BYTES / 16 ? await decompressAsync(body, decodeOpts) : decompress(body, decodeOpts);
    if (!bytes.resize(body.length + raw.length * WORKING_SET_FACTOR)) throw new DnsgeoError("DNSGEO_OVERLOADED", "http.max_buffered_bytes reached");
    const out = await deps.otlp.exportHttp(raw, req.headers["content-type"], raw.length >= SLICED_BODY_BYTES ? new TimeSlices() : undefined, req.headers["user-agent"]);
    bytes.hold(out.body.length);
    send(res, 200, { "content-type": out.contentType }, out.body);
  };

  const handleLookup = async (req: http.IncomingMessage, res: http.ServerResponse, path: string, expectContinue: boolean): Promise<void> => {
    if (req.method === "GET") {
      let ip: string;
      try {
        ip = decodeURIComponent(path.slice("/v1/lookup/".length));
      } catch {
        throw new DnsgeoError("DNSGEO_BAD_REQUEST", "the IP in the path is not valid percent-encoding");
      }
      const [a] = await app.lookupIps([ip]);
      if (!a) throw new Error("lookupIps returned no answer");
      if (a.status === "invalid" || a.status === "skipped") {
        // Not a batch route: a per-IP client error is honest here.
        sendError(res, "DNSGEO_NOT_LOOKUPABLE", a.status === "invalid" ? "not an IP address" : `special-purpose address (${a.reason ?? "special_purpose"})`, { query: a.query, ...(a.ip ? { ip: a.ip } : {}), reason: a.reason });
        return;
      }
      send(res, 200, { "content-type": "application/json" }, JSON.stringify(a));
      return;
    }
    const cl = req.headers["content-length"];
    if (cl !== undefined && Number(cl) > cfg.max_body_bytes) throw new DnsgeoError("DNSGEO_BODY_TOO_LARGE");
    if (expectContinue) res.writeContinue();
    const body = await readBody(req, cfg.max_body_bytes, cfg.body_timeout_ms);
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString("utf8"));
    } catch {
      throw new DnsgeoError("DNSGEO_BAD_REQUEST", 'expected a JSON array of IPs or {"ips":[…]}');
    }
    const ips = Array.isArray(doc) ? doc : (doc as { ips?: unknown } | null)?.ips;
    if (!Array.isArray(ips) || !ips.every((x) => typeof x === "string")) {
      throw new DnsgeoError("DNSGEO_BAD_REQUEST", 'expected a JSON array of IP strings or {"ips":[…]}');
    }
    requestPath.checkCount(ips.length, "IPs");
    const answers = await app.lookupIps(ips);
    send(res, 200, { "content-type": "application/json" }, JSON.stringify(answers));
  };

  const ready = (): boolean => listening && !requestPath.closing && app.ready();

  const handleOps = async (res: http.ServerResponse, route: "livez" | "readyz" | "metrics" | "openapi" | "status" | "statusjson", head: boolean): Promise<void> => {
    let status = 200;
    let body: string;
    let type = "application/json";
    if (route === "livez") body = '{"status":"ok"}';
    else if (route === "openapi") body = openApiText();
    else if (route === "status" || route === "statusjson") {
      const snap = await statusSnapshot(metrics.registry, (n) => app.memory?.recent(n) ?? []);
      if (route === "status") {
        body = statusHtml(snap);
        type = "text/html; charset=utf-8";
      } else body = JSON.stringify(snap);
    }    else if (route === "readyz") {
      const ok = ready();
      status = ok ? 200 : 503;
      body = ok ? '{"status":"ready"}' : `{"status":"${requestPath.closing ? "shutting_down" : "not_ready"}"}`;
    } else {
      body = await metrics.registry.metrics();
      type = metrics.registry.contentType;
    }
    if (head) {
      res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end();
    } else send(res, status, { "content-type": type }, body);
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void => {
    const start = performance.now();
    // Asked for every request so the turn's first arrival is noted; only batch routes are refused.
    const late = deps.guard ? deps.guard.exceeded() : false;
    // Open responses count for close() too.
    res.once("close", requestPath.hold());
    res.once("close", connections.requestStarted(req.socket));
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const qs = q < 0 ? "" : url.slice(q + 1);
    const route = routeOf(path);
    const method = req.method ?? "GET";
    res.once("finish", () => observe(route, start));

    if (route === "other") {
      sendError(res, "DNSGEO_NOT_FOUND", `no route ${path.slice(0, 200)}`, { routes: HTTP_ROUTES });
      return;
    }
    const allow = ALLOW[route];
    const isHead = method === "HEAD" && allow.includes("HEAD");
    const lookupPathOk = route !== "lookup" || (method === "GET" ? path.startsWith("/v1/lookup/") && path.length > 11 : path === "/v1/lookup");
    if ((!allow.split(", ").includes(method) && !isHead) || !lookupPathOk) {
      sendError(res, "DNSGEO_METHOD_NOT_ALLOWED", `${method} is not allowed on ${path.slice(0, 200)}`, { routes: HTTP_ROUTES }, undefined, {
        allow: route === "lookup" ? (path === "/v1/lookup" ? "POST" : "GET") : allow,
      });
      return;
    }
    const isOps = route === "livez" || route === "readyz" || route === "metrics" || route === "openapi" || route === "status" || route === "statusjson";
    if (requestPath.needsToken && (!isOps || protectOps)) {
      const fhKey = req.headers["x-amz-firehose-access-key"];
      if (!requestPath.authorize(req.headers.authorization, { route }, () => typeof fhKey === "string" && firehoseKeyCheck(fhKey))) {
        sendError(res, "DNSGEO_UNAUTHENTICATED", ERROR_CODES.DNSGEO_UNAUTHENTICATED.message, undefined, undefined, { "www-authenticate": 'Bearer realm="dnsgeo"' });
        return;
      }
    }
    const reserved = connections.isReserved(req.socket);
    // A connection accepted past http.max_connections serves one ops request, then closes.
    if (reserved) res.shouldKeepAlive = false;
    if (isOps) {
      handleOps(res, route, isHead).catch((e: unknown) => sendFailure(res, e));
      return;
    }
    if (reserved) {
      sendRefusal(res, requestPath.refusal("DNSGEO_OVERLOADED", `more than http.max_connections (${cfg.max_connections}) connections are open; this one serves /livez, /readyz and /metrics only`));
      return;
    }
    const client = clientKey(req.socket.remoteAddress);
    // Refused before reading the body; node discards the unread body so the connection stays usable.
    const refused = requestPath.admit(client, late || budget.full(client), true);
    if (refused) {
      sendRefusal(res, refused);
      return;
    }
    const bytes = budget.lease(client);
    res.once("close", bytes.release);
    // A handler keeps enriching/forwarding after its client hangs up: it holds its slot,
    // and counts for close(), until its work settles, not until the response closes.
    const work =
      route === "enrich"
        ? handleEnrich(req, res, qs, expectContinue, bytes)
        : route === "forward"
          ? handleForward(req, res, qs, expectContinue)
          : route === "otlp_logs"
            ? handleOtlp(req, res, expectContinue, bytes)
            : handleLookup(req, res, path, expectContinue);
    work.catch((e: unknown) => {
      if (e instanceof Aborted) {
        res.destroy();
        return;
      }
      if (e instanceof DnsgeoError && (e.code === "DNSGEO_BODY_TOO_LARGE" || e.code === "DNSGEO_BODY_TIMEOUT" || e.code === "DNSGEO_OVERLOADED") && !req.complete) {
        // The rest of the body is not read: close the connection after answering.
        res.shouldKeepAlive = false;
      }
      sendFailure(res, e, undefined, route === "otlp_logs");
    }).finally(() => requestPath.done(client));
  };

  const server: http.Server = deps.tls
    ? https.createServer(Object.assign(httpsOptions(deps.tls), { keepAlive: true }))
    : http.createServer({ keepAlive: true });
  // Idle keep-alive connections outlive the shippers' own idle timeouts (Fluent Bit 30 s,
  // Vector/undici 4 s) so the server is never the side that closes a connection a client is about to reuse.
  server.keepAliveTimeout = cfg.idle_timeout_ms;
  server.headersTimeout = 30_000;
  server.requestTimeout = 120_000;
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => onRequest(req, res, false));
  server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => onRequest(req, res, true));
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code !== "ECONNRESET" && err.code !== "EPIPE") logger.debug({ code: err.code }, "http client error");
    // As node's default handler: shippers retry 408 but drop a batch on 400, so a timeout must not read as a bad request.
    const inProgress = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage?.headersSent === true;
    if (socket.writable && !socket.destroyed && !inProgress) {
      const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });
  if (deps.tls) {
    server.on("tlsClientError", (err: NodeJS.ErrnoException) => logger.debug({ code: err.code }, "tls handshake failed"));
  }

  // Node's HTTP server gets each connection at its first byte (see firstByteListener).
  const tcp = firstByteListener(connections, deps.tls !== undefined, (socket) => server.emit("connection", socket));

  return {
    server,
    listen() {
      return new Promise((resolve, reject) => {
        const onError = (e: Error): void => reject(e);
        tcp.once("error", onError);
        tcp.listen({ port: cfg.port, host: cfg.host, backlog: LISTEN_BACKLOG }, () => {
          tcp.off("error", onError);
          tcp.on("error", (e) => logger.error({ err: e }, "http server error"));
          // The HTTP server never binds; 'listening' starts its checks of headersTimeout and requestTimeout.
          server.emit("listening");
          const a = tcp.address() as AddressInfo;
          addr = a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
          listening = true;
          resolve(addr);
        });
      });
    },
    address: () => addr,
    close(timeoutMs) {
      closed ??= (async () => {
        const drained = requestPath.close(timeoutMs);
        if (!listening) return;
        const tcpClosed = new Promise<void>((resolve) => tcp.close(() => resolve()));
        // Stops the HTTP server's timeout checks; it has no handle of its own to close.
        server.close();
        server.closeIdleConnections();
        connections.destroySilent();
        if (!(await drained)) logger.warn({ active: requestPath.inFlight }, "http: shutdown timeout; closing connections with requests in flight");
        server.closeAllConnections();
        connections.destroyAll();
        await tcpClosed;
        listening = false;
      })();
      return closed;
    },
  };
}
