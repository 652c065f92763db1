/**
 * `dnsgeo serve`: the HTTP and gRPC sidecar. Shutdown order (house style):
 * ingress (stop accepting) → in-flight requests → `app.close()` (background
 * lookups, write-behind flush, stores).
 */
import type { Command } from "commander";
import { createApp, type App } from "../app.js";
import { createMetrics } from "../observability/metrics.js";
import { ConfigError, deadLetterPath } from "../config.js";
import { DeadLetterFile } from "../transport/dead-letter.js";
import { Forwarder } from "../transport/forwarder.js";
import { FluentForwarder } from "../transport/fluent-forwarder.js";
import { createFluentServer, type FluentTransport } from "../transport/fluent-server.js";
import { createGrpcServer, type GrpcTransport } from "../transport/grpc-server.js";
import { createHttpServer, type HttpTransport } from "../transport/http-server.js";
import { OtlpForwarder } from "../transport/otlp-forwarder.js";
import { createOtlpService } from "../transport/otlp-service.js";
import { InflightLimiter, LoopTurnGuard } from "../transport/limits.js";
import { connectionCapWarning, fileDescriptorLimit } from "../transport/connections.js";
import { loadTls } from "../transport/tls.js";
import type { CliContext } from "./context.js";
import { buildInfo } from "../version.js";

export interface ServeHandle {
  /** "host:port" of the HTTP server when enabled. */
  httpAddress?: string;
  /** "host:port" of the gRPC server when enabled. */
  grpcAddress?: string;
  /** "host:port" of the Fluent forward protocol listener when `fluent.listen` is set. */
  fluentAddress?: string;
  /** Graceful, idempotent: stop accepting, finish in-flight requests (up to `shutdown.timeout_ms`), then `app.close()`. */
  close(): Promise<void>;
  /** Resolves once `close()` has finished. */
  readonly closed: Promise<void>;
}

/** Starts the transports enabled in `app.config`; on a bind failure everything started is closed again. */
export async function startServe(app: App): Promise<ServeHandle> {
  const cfg = app.config;
  const fdWarning = connectionCapWarning(
    { http: cfg.http.enabled ? cfg.http.max_connections : 0, grpc: cfg.grpc.enabled ? cfg.grpc.max_connections : 0, fluent: cfg.fluent.listen ? cfg.fluent.max_connections : 0 },
    fileDescriptorLimit(),
  );
  if (fdWarning) app.logger.warn({ fd_limit: fileDescriptorLimit() }, fdWarning);
  // Each listener has its own pool of in-flight slots, as each source of a shipper has its own limits.
  const httpLimiter = new InflightLimiter(cfg.http.max_inflight_requests, cfg.http.max_inflight_per_client);
  const grpcLimiter = new InflightLimiter(cfg.grpc.max_inflight_requests, cfg.grpc.max_inflight_per_client);
  const guard = new LoopTurnGuard(cfg.http.overload_turn_ms);
  const forwarder = cfg.forward.url
    ? new Forwarder(cfg.forward, { logger: app.logger, metrics: app.metrics, deadLetter: new DeadLetterFile(deadLetterPath(cfg), cfg.forward.dead_letter.max_bytes) })
    : undefined;
  let http: HttpTransport | undefined;
  let grpc: GrpcTransport | undefined;
  let fluent: FluentTransport | undefined;
  // A forward listener with nowhere to send could only hold or drop what it receives.
  if (cfg.fluent.listen && !cfg.fluent.next_hop) throw new ConfigError("config key fluent.listen (env DNSGEO_FLUENT_LISTEN): set, but fluent.next_hop (env DNSGEO_FLUENT_NEXT_HOP) is not; the forward listener needs an in_forward to send the enriched events to");
  const fluentForwarder = cfg.fluent.listen ? new FluentForwarder(cfg.fluent, { logger: app.logger, metrics: app.metrics }) : undefined;
  // OTLP logs are on the HTTP and gRPC ports; without otlp.next_hop they are refused (503 / UNAVAILABLE).
  const otlpForwarder = cfg.otlp.next_hop ? new OtlpForwarder(cfg.otlp, { logger: app.logger }) : undefined;
  const otlp = createOtlpService(app, otlpForwarder);
  let closing: Promise<void> | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const t = cfg.shutdown.timeout_ms;
      const started = Date.now();
      await Promise.all([http?.close(t), grpc?.close(t), fluent?.close(t)]);
      await forwarder?.close();
      await fluentForwarder?.close();
      await otlpForwarder?.close();
      app.logger.info({ ms: Date.now() - started }, "transports closed; closing the app");
      await app.close();
      markClosed();
    })();
    return closing;
  };

  const handle: ServeHandle = { close, closed };
  try {
    if (cfg.http.enabled) {
      const tls = loadTls(cfg.http.tls, "http.tls");
      http = createHttpServer({ app, limiter: httpLimiter, guard, otlp, forwarder, tls });
      handle.httpAddress = await http.listen();
    }
    if (cfg.grpc.enabled) {
      const tls = loadTls(cfg.grpc.tls, "grpc.tls");
      grpc = createGrpcServer({ app, limiter: grpcLimiter, guard, otlp, tls });
      handle.grpcAddress = await grpc.listen();
    }
    if (fluentForwarder) {
      fluent = createFluentServer({ app, forwarder: fluentForwarder });
      handle.fluentAddress = await fluent.listen();
    }
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
  return handle;
}

/** What `installSignalHandlers` listens on (`process` fits). */
export interface SignalSource {
  on(signal: "SIGTERM" | "SIGINT", listener: () => void): unknown;
  off(signal: "SIGTERM" | "SIGINT", listener: () => void): unknown;
}

/**
 * First SIGTERM/SIGINT: graceful `close()`, then `exit(0)` (or 1 when close failed).
 * A second signal exits at once (128 + signal number, as shells report it).
 * Returns a function that removes the handlers.
 */
export function installSignalHandlers(
  source: SignalSource,
  close: () => Promise<void>,
  exit: (code: number) => void,
  log?: { info(o: object, msg: string): void; error(o: object, msg: string): void },
): () => void {
  let first = true;
  const handler = (signal: "SIGTERM" | "SIGINT") => () => {
    if (!first) {
      log?.error({ signal }, "second signal: exiting now");
      exit(signal === "SIGINT" ? 130 : 143);
      return;
    }
    first = false;
    log?.info({ signal }, "shutting down");
    close().then(
      () => exit(0),
      (e: unknown) => {
        log?.error({ err: e }, "shutdown failed");
        exit(1);
      },
    );
  };
  const onTerm = handler("SIGTERM");
  const onInt = handler("SIGINT");
  source.on("SIGTERM", onTerm);
  source.on("SIGINT", onInt);
  return () => {
    source.off("SIGTERM", onTerm);
    source.off("SIGINT", onInt);
  };
}

/** Adds `dnsgeo serve`. */
export function registerServe(program: Command, ctx: CliContext): void {
  program
    .command("serve")
    .description("run the HTTP (default 127.0.0.1:8053) and gRPC (default 127.0.0.1:8054) sidecar until SIGTERM/SIGINT")
    .action(async () => {
      const cfg = ctx.loadConfig();
      const app = await createApp(cfg, { logger: ctx.logger, metrics: createMetrics({ defaultMetrics: true }) });
      let handle: ServeHandle;
      try {
        handle = await startServe(app);
      } catch (e) {
        await app.close();
        throw e;
      }
      // Tests and supervisors read the bound addresses from this line (ports may be 0 in config).
      const build = buildInfo();
      ctx.logger.info(
        Object.assign({ version: build.version, node: build.node }, build.commit ? { commit: build.commit } : {}, { http: handle.httpAddress ?? null, grpc: handle.grpcAddress ?? null }, handle.fluentAddress ? { fluent: handle.fluentAddress } : {}),
        "listening",
      );
      if (ctx.signals) installSignalHandlers(ctx.signals, handle.close, ctx.exit ?? (() => undefined), ctx.logger);
      // SIGHUP reloads the policy rules (a bad file keeps the rules in use); without rules it is logged and ignored.
      const onHup = (): void => {
        if (app.policy) app.policy.reload("sighup");
        else ctx.logger.info({ signal: "SIGHUP" }, "no policy rules configured; nothing to reload");
      };
      ctx.signals?.on("SIGHUP", onHup);
      void handle.closed.then(() => ctx.signals?.off("SIGHUP", onHup));
      await handle.closed;
    });
}
