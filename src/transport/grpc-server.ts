/**
 * The gRPC transport (grpc-js): `dnsgeo.v1.Enrichment` from
 * `proto/dnsgeo/v1/enrichment.proto` (loaded at run time), `grpc.health.v1.Health`
 * (with Watch) and server reflection.
 *
 * Every failure leaves with an explicit status from the error table (never UNKNOWN).
 * The in-flight budget is shared with HTTP; one stream message takes one slot while
 * it is processed.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { DnsgeoError, ERROR_CODES, type ErrorCode } from "../errors.js";
import type { EnrichOptions } from "../pipeline/enrich.js";
import type { DecodedItem } from "../pipeline/types.js";
import { createTokenCheck } from "./auth.js";
import { InflightLimiter, LoopTurnGuard, within } from "./limits.js";
import { refusalReason } from "./refusal.js";
import { grpcCredentials, type TlsMaterial } from "./tls.js";
import type { TransportApp } from "./transport-app.js";
import { parseJsonBounded } from "../pipeline/json-depth.js";
import { encodeEnrichResponse, passEncoded, type EncodedMessage } from "./grpc-codec.js";

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
  const maxRecords = app.config.limits.max_records_per_request;
  const retryAfterMs = app.config.http.retry_after_s * 1000;
  const tokenCheck = app.config.auth.token ? createTokenCheck(app.config.auth.token) : undefined;
  const protectOps = app.config.auth.protect_ops;

  let closing = false;
  let closed: Promise<void> | undefined;
  let addr: string | undefined;
  const streams = new Set<{ stop(): void }>();

  const fail = (code: ErrorCode, details: string): Partial<grpc.StatusObject> => {
    const reason = refusalReason(code);
    if (reason) metrics.refused.inc({ transport: "grpc", reason });
    const retryable = code === "DNSGEO_OVERLOADED" || code === "DNSGEO_SHUTTING_DOWN";
    return statusOf(code, details, retryable ? retryAfterMs : undefined);
  };

  const toStatus = (e: unknown): Partial<grpc.StatusObject> => {
    if (e instanceof DnsgeoError) {
      logger.error({ code: e.code }, `grpc request refused: ${e.message}`);
      return fail(e.code, e.message);
    }
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === "string" && code in ERROR_CODES) return fail(code as ErrorCode, (e as Error).message);
    logger.error({ err: e }, "grpc request failed");
    return fail("DNSGEO_INTERNAL", ERROR_CODES.DNSGEO_INTERNAL.message);
  };

  const enrichOne = async (req: EnrichRequestMsg): Promise<EnrichResponseMsg> => {
    const records = req.records ?? [];
    if (records.length > maxRecords) throw new DnsgeoError("DNSGEO_TOO_MANY_RECORDS", `${records.length} records, limits.max_records_per_request is ${maxRecords}`);
    const opts: EnrichOptions = {};
    if (req.format) {
      if (req.format !== "ecs" && req.format !== "quicksight") throw new DnsgeoError("DNSGEO_BAD_REQUEST", `format must be ecs or quicksight, got "${req.format.slice(0, 40)}"`);
      opts.format = req.format;
    }
    if (req.explode !== undefined) opts.explode = req.explode;
    const items: DecodedItem[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const s = records[i] as string;
      try {
        const value = parseJsonBounded(s);
        // The source text lets the ECS formatter append instead of re-serializing (plain objects only).
        items[i] = value !== null && typeof value === "object" && !Array.isArray(value) ? { kind: "json", value, text: s } : { kind: "json", value };
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

  let active = 0;
  let idleWaiters: Array<() => void> = [];
  const admit = (): ErrorCode | undefined => {
    if (closing) return "DNSGEO_SHUTTING_DOWN";
    if (deps.guard?.exceeded() || !limiter.tryAcquire()) return "DNSGEO_OVERLOADED";
    active++;
    return undefined;
  };
  const checkIdle = (): void => {
    if (active === 0 && streams.size === 0 && idleWaiters.length > 0) {
      const ws = idleWaiters;
      idleWaiters = [];
      for (const w of ws) w();
    }
  };
  const release = (): void => {
    limiter.release();
    active--;
    checkIdle();
  };
  const idle = (): Promise<void> => (active === 0 && streams.size === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve)));

  const refuse = (code: ErrorCode): Partial<grpc.StatusObject> => fail(code, ERROR_CODES[code].message);

  const handlers: grpc.UntypedServiceImplementation = {
    Enrich(call: grpc.ServerUnaryCall<EnrichRequestMsg, EnrichResponseMsg>, callback: grpc.sendUnaryData<EnrichResponseMsg>) {
      const start = performance.now();
      const refused = admit();
      if (refused) {
        callback(refuse(refused));
        return;
      }
      enrichOne(call.request).then(
        (res) => {
          release();
          observe("enrich", start);
          callback(null, res);
        },
        (e: unknown) => {
          release();
          callback(toStatus(e));
        },
      );
    },

    EnrichStream(call: grpc.ServerDuplexStream<EnrichRequestMsg, EnrichResponseMsg>) {
      let busy = false;
      let ended = false;
      let finished = false;
      const finish = (status?: Partial<grpc.StatusObject>): void => {
        if (finished) return;
        finished = true;
        streams.delete(handle);
        checkIdle();
        if (status) call.emit("error", status);
        else call.end();
      };
      const handle = {
        stop(): void {
          if (!busy) finish(refuse("DNSGEO_SHUTTING_DOWN"));
        },
      };
      streams.add(handle);
      call.on("data", (req: EnrichRequestMsg) => {
        if (finished) return;
        const start = performance.now();
        const refused = admit();
        if (refused) {
          finish(refuse(refused));
          return;
        }
        busy = true;
        call.pause();
        enrichOne(req).then(
          (res) => {
            release();
            busy = false;
            observe("enrich_stream", start);
            if (finished) return;
            call.write(res);
            if (closing) finish(refuse("DNSGEO_SHUTTING_DOWN"));
            else if (ended) finish();
            else call.resume();
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
        streams.delete(handle);
        checkIdle();
      });
      call.on("error", () => {
        finished = true;
        streams.delete(handle);
        checkIdle();
      });
    },

    Lookup(call: grpc.ServerUnaryCall<LookupRequestMsg, { results: string[] }>, callback: grpc.sendUnaryData<{ results: string[] }>) {
      const start = performance.now();
      const refused = admit();
      if (refused) {
        callback(refuse(refused));
        return;
      }
      const ips = call.request.ips ?? [];
      const work =
        ips.length > maxRecords
          ? Promise.reject(new DnsgeoError("DNSGEO_TOO_MANY_RECORDS", `${ips.length} IPs, limits.max_records_per_request is ${maxRecords}`))
          : app.lookupIps(ips);
      work.then(
        (answers) => {
          release();
          observe("lookup", start);
          callback(null, { results: answers.map((a) => JSON.stringify(a)) });
        },
        (e: unknown) => {
          release();
          callback(toStatus(e));
        },
      );
    },
  };

  const authInterceptor: grpc.ServerInterceptor = (method, call) => {
    if (!tokenCheck || (!protectOps && OPS_SERVICES.some((p) => method.path.startsWith(p)))) return new grpc.ServerInterceptingCall(call);
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const v = metadata.get("authorization")[0];
        if (tokenCheck(typeof v === "string" ? v : undefined)) {
          next(metadata);
          return;
        }
        logger.error({ method: method.path }, "grpc request refused: missing or wrong bearer token");
        const st = fail("DNSGEO_UNAUTHENTICATED", ERROR_CODES.DNSGEO_UNAUTHENTICATED.message);
        call.sendStatus({ code: st.code as grpc.status, details: st.details as string, metadata: st.metadata ?? new grpc.Metadata() });
      })
      .build();
    const responder = new grpc.ResponderBuilder().withStart((next) => next(listener)).build();
    return new grpc.ServerInterceptingCall(call, responder);
  };

  const server = new grpc.Server({
    "grpc.max_receive_message_length": cfg.max_message_bytes,
    // Enriched output is 2.6–4× its input: capping answers at the receive limit would fail a
    // request near it only after the work, with a status clients retry forever. The client's
    // own receive limit governs instead.
    "grpc.max_send_message_length": -1,
    // Without a token there is nothing to check: no interceptor layer on every call.
    interceptors: tokenCheck ? [authInterceptor] : [],
  });
  const definition = loadEnrichmentDefinition();
  const service = definition[ENRICHMENT_SERVICE];
  if (!service || !("Enrich" in service)) throw new Error(`${ENRICHMENT_SERVICE} is missing from ${PROTO_REL}`);
  // Enrich answers are encoded by grpc-codec.ts; the shared definition (reflection reads it) is left as loaded.
  const methods = service as grpc.ServiceDefinition;
  const withEncoded = (m: grpc.MethodDefinition<object, object>): grpc.MethodDefinition<object, object | EncodedMessage> => ({ ...m, responseSerialize: passEncoded(m.responseSerialize) });
  const enrichment: grpc.ServiceDefinition = { ...methods, Enrich: withEncoded(methods.Enrich as grpc.MethodDefinition<object, object>), EnrichStream: withEncoded(methods.EnrichStream as grpc.MethodDefinition<object, object>) };
  server.addService(enrichment, handlers);
  const health = new HealthImplementation({ "": "NOT_SERVING", [ENRICHMENT_SERVICE]: "NOT_SERVING" });
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);

  const setHealth = (s: "SERVING" | "NOT_SERVING"): void => {
    health.setStatus("", s);
    health.setStatus(ENRICHMENT_SERVICE, s);
  };

  return {
    server,
    health,
    listen() {
      const host = cfg.host.includes(":") && !cfg.host.startsWith("[") ? `[${cfg.host}]` : cfg.host;
      return new Promise((resolve, reject) => {
        server.bindAsync(`${host}:${cfg.port}`, grpcCredentials(deps.tls), (err, port) => {
          if (err) {
            reject(err);
            return;
          }
          addr = `${host}:${port}`;
          if (app.ready()) setHealth("SERVING");
          resolve(addr);
        });
      });
    },
    address: () => addr,
    close(timeoutMs) {
      closed ??= (async () => {
        closing = true;
        setHealth("NOT_SERVING");
        for (const s of [...streams]) s.stop();
        const done = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        // Health Watch streams never end on their own; once dnsgeo's own calls are
        // answered, give the last responses a moment to flush, then cut the rest.
        const drained = idle().then(() => within(done, FLUSH_GRACE_MS));
        if (!(await within(Promise.race([done, drained]), timeoutMs))) logger.warn({ active }, "grpc: shutdown timeout; cancelling calls still running");
        server.forceShutdown();
      })();
      return closed;
    },
  };
}
