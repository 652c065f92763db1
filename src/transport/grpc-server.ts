/**
 * The gRPC transport (grpc-js): `dnsgeo.v1.Enrichment` from
 * `proto/dnsgeo/v1/enrichment.proto` (loaded at run time), `grpc.health.v1.Health`
 * (with Watch) and server reflection.
 *
 * Every failure leaves with an explicit status from the error table (never UNKNOWN).
 * The in-flight slots are gRPC's own (`grpc.max_inflight_requests`); one stream message
 * takes one slot while it is processed.
 *
 * A client that does not read holds up its own calls, not the process: a stream reads
 * its next request only once its last answer was written, answers waiting to be
 * written count against `grpc.max_unsent_answer_bytes` and, per connection,
 * `grpc.max_unsent_answer_bytes_per_connection` (new calls past either are refused at
 * once), and a connection whose answers wait longer than `grpc.send_timeout_ms` is
 * closed. dnsgeo owns the listening socket (grpc-js gets the accepted connections) so
 * it can cap connections and close silent ones.
 */
import { existsSync } from "node:fs";
import * as net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { ERROR_CODES, isRetryable, type ErrorCode } from "../errors.js";
import type { DecodedItem } from "../pipeline/types.js";
import { within, type InflightLimiter, type LoopTurnGuard } from "./limits.js";
import { requestPathFor, type Refusal } from "./request-path.js";
import { grpcCredentials, type TlsMaterial } from "./tls.js";
import type { TransportApp } from "./transport-app.js";
import { parseJsonBounded } from "../pipeline/json-depth.js";
import { answerSizeHint, decodeEnrichRequest, decodeLookupRequest, encodeEnrichResponse, MalformedRequest, passEncoded, type EncodedMessage } from "./grpc-codec.js";
import { ConnectionLimiter, firstByteListener, LISTEN_BACKLOG } from "./connections.js";
import type { OtlpService } from "./otlp-service.js";
import { decodeLogsRequest, encodeLogsRequest, encodeLogsResponse, LOGS_EXPORT_PATH, type ExportLogsRequest, type ExportLogsResponse } from "./otlp-proto.js";

/** Full name of the service, as health checks and reflection know it. */
export const ENRICHMENT_SERVICE = "dnsgeo.v1.Enrichment";

const PROTO_REL = join("proto", "dnsgeo", "v1", "enrichment.proto");

/**
 * The proto file, found by walking up from this module: works from `src/` (tests)
 * and from `dist/src/` (the built CLI) alike.
 */
export function enrichmentProtoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, PROTO_REL);
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${PROTO_REL} above ${dirname(fileURLToPath(import.meta.url))}`);
}

/** proto-loader options shared by the server and test/bench clients. */
export const PROTO_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: false, arrays: true, oneofs: true };

/** Loads the Enrichment package definition (plus the health proto, so reflection lists both). */
export function loadEnrichmentDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync([enrichmentProtoPath(), healthProtoPath], PROTO_OPTIONS);
}

interface EnrichRequestMsg {
  records?: string[];
  format?: string;
  explode?: boolean;
  id?: string;
}
/** EnrichResponse leaves already in wire form (see grpc-codec.ts). */
type EnrichResponseMsg = EncodedMessage;
interface LookupRequestMsg {
  ips?: string[];
}

export interface GrpcServerDeps {
  app: TransportApp;
  limiter: InflightLimiter;
  /** Shared with the HTTP server: refuses calls that queued behind a burst. */
  guard?: LoopTurnGuard;
  tls?: TlsMaterial;
  /** OTLP logs (`LogsService/Export`); without it the method answers DNSGEO_OTLP_NOT_CONFIGURED. */
  otlp?: OtlpService;
}

export interface GrpcTransport {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  /** Binds `grpc.host:grpc.port`; resolves to "host:port". */
  listen(): Promise<string>;
  address(): string | undefined;
  /** Health → NOT_SERVING, streams end after their current message, calls finish (up to `timeoutMs`). Idempotent. */
  close(timeoutMs: number): Promise<void>;
}

/** After the last call is answered, longest wait for clients to read it before connections are cut. */
const FLUSH_GRACE_MS = 1000;

/** Refused Watch calls after which their connection is closed (see ConnectionLimiter.noteRefusal). */
const WATCH_REFUSALS_PER_CONNECTION = 16;

const OPS_SERVICES = ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

function statusOf(code: ErrorCode, details: string, retryAfterMs?: number): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set("dnsgeo-error-code", code);
  // gRFC A6 retry pushback: clients with retry policies wait this long.
  if (retryAfterMs !== undefined) metadata.set("grpc-retry-pushback-ms", String(retryAfterMs));
  return { code: ERROR_CODES[code].grpc, details, metadata };
}

/** Builds the gRPC transport; call `listen()` to bind. */
export function createGrpcServer(deps: GrpcServerDeps): GrpcTransport {
  const { app, limiter } = deps;
  const cfg = app.config.grpc;
  const logger = app.logger;
  const metrics = app.metrics;
  const requestPath = requestPathFor(app, "grpc", limiter, deps.guard);
  const protectOps = app.config.auth.protect_ops;

  let closed: Promise<void> | undefined;
  let addr: string | undefined;
  let listener: net.Server | undefined;
  /** Open EnrichStream calls, each told to stop on close(). */
  const streams = new Set<{ stop(): void }>();
  const connections = new ConnectionLimiter({
    transport: "grpc",
    maxConnections: cfg.max_connections,
    firstByteTimeoutMs: cfg.first_byte_timeout_ms,
    reserved: 0,
    evict: "silent",
    metrics,
    logger,
  });
  /** Answer bytes handed to grpc-js and not yet written (see GuardedCall). */
  let unsent = 0;
  /** The same by connection (grpc-js's peer text, address and port). */
  const unsentByPeer = new Map<string, number>();
  const addUnsent = (n: number, peer: string): void => {
    unsent += n;
    metrics.grpcUnsentAnswerBytes.set(unsent);
    const left = (unsentByPeer.get(peer) ?? 0) + n;
    if (left > 0) unsentByPeer.set(peer, left);
    else unsentByPeer.delete(peer);
  };

  /** The status of `code`, with retry pushback when the client should try again. */
  const status = (code: ErrorCode, details: string): Partial<grpc.StatusObject> => statusOf(code, details, isRetryable(code) ? requestPath.retryAfterMs : undefined);
  /** A refusal at admission (already counted by the request path). */
  const refuse = (r: Refusal): Partial<grpc.StatusObject> => status(r.code, r.message);
  /** A refusal found before admission (a malformed message), counted here. */
  const fail = (code: ErrorCode, details: string): Partial<grpc.StatusObject> => refuse(requestPath.refusal(code, details));
  /** A call's work failed. */
  const toStatus = (e: unknown): Partial<grpc.StatusObject> => {
    const err = requestPath.failure(e);
    return status(err.code, err.message);
  };

  const enrichOne = async (req: EnrichRequestMsg): Promise<EnrichResponseMsg> => {
    const records = req.records ?? [];
    requestPath.checkCount(records.length);
    const opts = requestPath.options(req.format, req.explode);
    const items: DecodedItem[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const s = records[i] as string;
      try {
        const value = parseJsonBounded(s);
        // The source text: the answer is built from it, so every original value comes back as written.
        items[i] = { kind: "json", value, text: s };
      } catch {
        items[i] = { kind: "unparsed", raw: s };
      }
    }
    const out = await app.enricher.enrichDecoded({ framing: "ndjson", items }, opts);
    return encodeEnrichResponse({ items: out.items, counts: out.counts, id: req.id ?? "", lookedUp: out.lookedUp });
  };

  const observe = (route: string, start: number): void => {
    metrics.requestDuration.observe({ transport: "grpc", route }, (performance.now() - start) / 1000);
  };

  /** Admits one call (or stream message) of the connection `peer`; `release()` follows once it settles. */
  const admit = (peer: string): Refusal | undefined => {
    const unsentFull = !requestPath.closing && (unsent >= cfg.max_unsent_answer_bytes || (unsentByPeer.get(peer) ?? 0) >= cfg.max_unsent_answer_bytes_per_connection);
    if (unsentFull) metrics.refused.inc({ transport: "grpc", reason: "unsent_answers" });
    return requestPath.admit(undefined, unsentFull);
  };
  const release = (): void => requestPath.done();

  /**
   * A unary method: a malformed request refused, `precheck` asked, the call admitted,
   * `work` run, the slot given back, and its answer or its failure's status sent.
   * `refused` encodes an admission refusal where a method's clients need another code.
   */
  const unary =
    <Req, Res>(
      route: string,
      work: (req: Req) => Promise<Res>,
      opts: { precheck?: () => Partial<grpc.StatusObject> | undefined; refused?: (r: Refusal) => Partial<grpc.StatusObject> } = {},
    ) =>
    (call: grpc.ServerUnaryCall<Req | MalformedRequest, Res>, callback: grpc.sendUnaryData<Res>): void => {
      const start = performance.now();
      const req = call.request;
      if (req instanceof MalformedRequest) {
        callback(fail("DNSGEO_BAD_REQUEST", req.reason));
        return;
      }
      const early = opts.precheck?.();
      if (early) {
        callback(early);
        return;
      }
      const refused = admit(call.getPeer());
      if (refused) {
        callback((opts.refused ?? refuse)(refused));
        return;
      }
      work(req).then(
        (res) => {
          release();
          observe(route, start);
          callback(null, res);
        },
        (e: unknown) => {
          release();
          callback(toStatus(e));
        },
      );
    };

  const handlers: grpc.UntypedServiceImplementation = {
    Enrich: unary("enrich", enrichOne),

    EnrichStream(call: grpc.ServerDuplexStream<EnrichRequestMsg | MalformedRequest, EnrichResponseMsg>) {
      let busy = false;
      let ended = false;
      let finished = false;
      // An open stream counts for close() between its messages too.
      const unhold = requestPath.hold();
      const forget = (): void => {
        streams.delete(handle);
        unhold();
      };
      const finish = (st?: Partial<grpc.StatusObject>): void => {
        if (finished) return;
        finished = true;
        forget();
        if (st) call.emit("error", st);
        else call.end();
      };
      const handle = {
        stop(): void {
          if (!busy) finish(refuse(requestPath.refusal("DNSGEO_SHUTTING_DOWN")));
        },
      };
      streams.add(handle);
      call.on("data", (req: EnrichRequestMsg | MalformedRequest) => {
        if (finished) return;
        if (req instanceof MalformedRequest) {
          finish(fail("DNSGEO_BAD_REQUEST", req.reason));
          return;
        }
        const start = performance.now();
        const refused = admit(call.getPeer());
        if (refused) {
          finish(refuse(refused));
          return;
        }
        busy = true;
        call.pause();
        enrichOne(req).then(
          (res) => {
            release();
            observe("enrich_stream", start);
            if (finished) {
              busy = false;
              return;
            }
            // The next request is read once this answer has left for the client: one that
            // does not read holds up this stream, with one answer waiting, and nothing else.
            call.write(res, () => {
              busy = false;
              if (finished) return;
              if (requestPath.closing) finish(refuse(requestPath.refusal("DNSGEO_SHUTTING_DOWN")));
              else if (ended) finish();
              else call.resume();
            });
          },
          (e: unknown) => {
            release();
            busy = false;
            finish(toStatus(e));
          },
        );
      });
      call.on("end", () => {
        ended = true;
        if (!busy) finish();
      });
      call.on("cancelled", () => {
        finished = true;
        forget();
      });
      call.on("error", () => {
        finished = true;
        forget();
      });
    },

    Lookup: unary("lookup", async (req: LookupRequestMsg) => {
      const ips = req.ips ?? [];
      requestPath.checkCount(ips.length, "IPs");
      const answers = await app.lookupIps(ips);
      return { results: answers.map((a) => JSON.stringify(a)) };
    }),
  };

  const unauthenticated = (): grpc.StatusObject => {
    const st = status("DNSGEO_UNAUTHENTICATED", ERROR_CODES.DNSGEO_UNAUTHENTICATED.message);
    return { code: st.code as grpc.status, details: st.details as string, metadata: st.metadata ?? new grpc.Metadata() };
  };

  /**
   * Every call goes through this one layer: it checks the token (when one is set and the
   * method needs it) and counts the call's answers against `grpc.max_unsent_answer_bytes`
   * from the moment they are handed to grpc-js until HTTP/2 has written them. An answer
   * still waiting after `grpc.send_timeout_ms` means the client stopped reading: its
   * connection is closed, which ends its calls and gives their bytes back.
   */
  class GuardedCall extends grpc.ServerInterceptingCall {
    private held = 0;
    private received = 0;
    private written = 0;
    private readWaiting = false;
    constructor(
      next: grpc.ServerInterceptingCallInterface,
      private readonly checkToken: boolean,
      private readonly path: string,
      /**
       * Bidirectional streams answer each request with one message: such a call reads its
       * next request only once the answer to the last one was written. grpc-js would
       * otherwise read 16 requests ahead of the handler (its stream's buffer), up to
       * 16 × grpc.max_message_bytes per stream whose client does not read.
       */
      private readonly lockstep: boolean,
    ) {
      super(next);
    }

    override startRead(): void {
      if (this.lockstep && this.received > this.written) {
        this.readWaiting = true;
        return;
      }
      super.startRead();
    }

    override start(listener: Parameters<grpc.ServerInterceptingCallInterface["start"]>[0]): void {
      super.start({
        onReceiveMetadata: (metadata) => {
          if (this.checkToken) {
            const v = metadata.get("authorization")[0];
            if (!requestPath.authorize(typeof v === "string" ? v : undefined, { method: this.path })) {
              this.sendStatus(unauthenticated());
              return;
            }
          }
          listener.onReceiveMetadata(metadata);
        },
        onReceiveMessage: (message) => {
          this.received++;
          listener.onReceiveMessage(message);
        },
        onReceiveHalfClose: () => listener.onReceiveHalfClose(),
        onCancel: () => {
          // Called once the call is over, answered or not: what was never written is given back.
          if (this.held > 0) {
            addUnsent(-this.held, this.getPeer());
            this.held = 0;
          }
          listener.onCancel();
        },
      });
    }

    override sendMessage(message: unknown, callback: () => void): void {
      const n = answerSizeHint(message);
      this.held += n;
      addUnsent(n, this.getPeer());
      let written = false;
      const timer = setTimeout(() => {
        if (written) return;
        metrics.connectionsClosed.inc({ transport: "grpc", reason: "send_timeout" });
        connections.destroy(this.getPeer());
      }, cfg.send_timeout_ms);
      timer.unref();
      super.sendMessage(message, () => {
        written = true;
        clearTimeout(timer);
        const give = Math.min(n, this.held);
        this.held -= give;
        addUnsent(-give, this.getPeer());
        this.written++;
        if (this.readWaiting && this.received <= this.written) {
          this.readWaiting = false;
          super.startRead();
        }
        callback();
      });
    }
  }

  const guardInterceptor: grpc.ServerInterceptor = (method, call) =>
    new GuardedCall(
      call,
      requestPath.needsToken && (protectOps || !OPS_SERVICES.some((p) => method.path.startsWith(p))),
      method.path,
      method.requestStream && method.responseStream,
    );

  let watches = 0;
  /**
   * Watch streams never end on their own and need no token by default: without a cap a
   * client could open them until memory runs out. Past `grpc.max_watch_streams` a new
   * one is refused at once. A name dnsgeo does not serve gets SERVICE_UNKNOWN without a
   * watcher registered (grpc-health-check keeps an entry per name ever watched).
   */
  const capWatch =
    (watch: grpc.handleServerStreamingCall<{ service?: string }, unknown>): grpc.handleServerStreamingCall<{ service?: string }, unknown> =>
    (call) => {
      if (watches >= cfg.max_watch_streams) {
        metrics.refused.inc({ transport: "grpc", reason: "watch_streams" });
        call.emit("error", statusOf("DNSGEO_OVERLOADED", `more than grpc.max_watch_streams (${cfg.max_watch_streams}) health Watch streams are open`));
        connections.noteRefusal(call.getPeer(), WATCH_REFUSALS_PER_CONNECTION, "watch_refused");
        return;
      }
      watches++;
      metrics.grpcWatchStreams.set(watches);
      let open = true;
      const done = (): void => {
        if (!open) return;
        open = false;
        watches--;
        metrics.grpcWatchStreams.set(watches);
      };
      call.once("cancelled", done);
      call.once("finish", done);
      call.once("close", done);
      const service = call.request.service ?? "";
      if (service !== "" && service !== ENRICHMENT_SERVICE) {
        call.write({ status: "SERVICE_UNKNOWN" });
        return;
      }
      watch(call);
    };

  const server = new grpc.Server({
    "grpc.max_receive_message_length": cfg.max_message_bytes,
    // Enriched output is 2.6–4× its input: capping answers at the receive limit would fail a
    // request near it only after the work, with a status clients retry forever. The client's
    // own receive limit governs instead.
    "grpc.max_send_message_length": -1,
    "grpc.max_concurrent_streams": cfg.max_concurrent_streams,
    "grpc.max_connection_idle_ms": cfg.idle_timeout_ms,
    interceptors: [guardInterceptor],
  });
  const definition = loadEnrichmentDefinition();
  const service = definition[ENRICHMENT_SERVICE];
  if (!service || !("Enrich" in service)) throw new Error(`${ENRICHMENT_SERVICE} is missing from ${PROTO_REL}`);
  // Enrich answers are encoded by grpc-codec.ts; the shared definition (reflection reads it) is left as loaded.
  const methods = service as grpc.ServiceDefinition;
  const withEncoded = (m: grpc.MethodDefinition<object, object>): grpc.MethodDefinition<object, object | EncodedMessage> => ({ ...m, responseSerialize: passEncoded(m.responseSerialize) });
  // Requests are decoded strictly (see grpc-codec.ts): a malformed one reaches the handler as a MalformedRequest.
  const enrichRequest = { requestDeserialize: decodeEnrichRequest };
  const enrichment: grpc.ServiceDefinition = {
    ...methods,
    Enrich: { ...withEncoded(methods.Enrich as grpc.MethodDefinition<object, object>), ...enrichRequest },
    EnrichStream: { ...withEncoded(methods.EnrichStream as grpc.MethodDefinition<object, object>), ...enrichRequest },
    Lookup: { ...(methods.Lookup as grpc.MethodDefinition<object, object>), requestDeserialize: decodeLookupRequest },
  };
  server.addService(enrichment, handlers);
  // OTLP logs (opentelemetry.proto.collector.logs.v1.LogsService/Export): messages read and
  // written by otlp-proto.ts; the call is admitted like Enrich (token, in-flight slot).
  const logsService: grpc.ServiceDefinition = {
    Export: {
      path: LOGS_EXPORT_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: ExportLogsRequest) => encodeLogsRequest(m),
      requestDeserialize: (b: Buffer): ExportLogsRequest | MalformedRequest => {
        try {
          return decodeLogsRequest(b);
        } catch (e) {
          return new MalformedRequest((e as Error).message);
        }
      },
      responseSerialize: (m: ExportLogsResponse) => encodeLogsResponse(m),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(logsService, {
    Export: unary("otlp_export", (req: ExportLogsRequest) => (deps.otlp as OtlpService).exportRequest(req), {
      precheck: () => (deps.otlp ? undefined : fail("DNSGEO_OTLP_NOT_CONFIGURED", ERROR_CODES.DNSGEO_OTLP_NOT_CONFIGURED.message)),
      // OTLP exporters retry RESOURCE_EXHAUSTED only with RetryInfo details: overload is UNAVAILABLE here.
      refused: (r) => (r.code === "DNSGEO_OVERLOADED" ? { ...refuse(r), code: grpc.status.UNAVAILABLE } : refuse(r)),
    }),
  });
  const health = new HealthImplementation({ "": "NOT_SERVING", [ENRICHMENT_SERVICE]: "NOT_SERVING" });
  health.addToServer({
    addService: (svc, impl) => server.addService(svc, { ...impl, watch: capWatch(impl.watch as grpc.handleServerStreamingCall<{ service?: string }, unknown>) }),
  });
  new ReflectionService(definition).addToServer(server);

  const setHealth = (s: "SERVING" | "NOT_SERVING"): void => {
    health.setStatus("", s);
    health.setStatus(ENRICHMENT_SERVICE, s);
  };

  return {
    server,
    health,
    listen() {
      const bare = cfg.host.startsWith("[") && cfg.host.endsWith("]") ? cfg.host.slice(1, -1) : cfg.host;
      const host = bare.includes(":") ? `[${bare}]` : bare;
      const injector = server.createConnectionInjector(grpcCredentials(deps.tls));
      // grpc-js gets each connection at its first byte (see firstByteListener).
      const tcp = firstByteListener(connections, true, (socket) => injector.injectConnection(socket));
      listener = tcp;
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen({ port: cfg.port, host: bare, backlog: LISTEN_BACKLOG }, () => {
          tcp.off("error", reject);
          tcp.on("error", (e) => logger.error({ err: e }, "grpc listener error"));
          addr = `${host}:${(tcp.address() as net.AddressInfo).port}`;
          if (app.ready()) setHealth("SERVING");
          resolve(addr);
        });
      });
    },
    address: () => addr,
    close(timeoutMs) {
      closed ??= (async () => {
        const settled = requestPath.close(timeoutMs);
        setHealth("NOT_SERVING");
        listener?.close();
        for (const s of [...streams]) s.stop();
        const done = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        // Health Watch streams never end on their own; once dnsgeo's own calls are
        // answered, give the last responses a moment to flush, then cut the rest.
        const drained = settled.then(async (ok) => {
          if (ok) await within(done, FLUSH_GRACE_MS);
          return ok;
        });
        if (!(await Promise.race([done.then(() => true), drained]))) logger.warn({ active: requestPath.inFlight }, "grpc: shutdown timeout; cancelling calls still running");
        server.forceShutdown();
        connections.destroyAll();
      })();
      return closed;
    },
  };
}
