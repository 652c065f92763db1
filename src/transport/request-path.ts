/**
 * The request path every listener shares (docs/architecture.md, "One request path"):
 * HTTP, gRPC and the Fluent forward listener each read bytes and write answers in their
 * own protocol, and hand everything between to this one unit:
 *
 * - **admission**: refused while shutting down, when the loop-turn guard or a byte
 *   budget says the process is behind, or when the transport's in-flight slots (or the
 *   client's share of them) are taken;
 * - **auth**: the bearer token, with refusals logged at a bounded rate;
 * - **options and caps**: `format` / `explode` as a request may ask for them, and
 *   `limits.max_records_per_request`;
 * - **errors**: any failure becomes a `DnsgeoError` from the one table (unknown ones
 *   become DNSGEO_INTERNAL and are logged), counted in `dnsgeo_requests_refused_total`
 *   when it is a refusal; the transport only encodes its code as a status;
 * - **drain**: `close()` refuses new requests and resolves once admitted requests, and
 *   anything else the transport holds open, have settled.
 */
import { DnsgeoError, ERROR_CODES, isRetryable, type ErrorCode } from "../errors.js";
import { BurstLog } from "../lookup/burst-log.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { EnrichOptions } from "../pipeline/enrich.js";
import { createTokenCheck } from "./auth.js";
import { within, type InflightLimiter, type LoopTurnGuard } from "./limits.js";
import { refusalReason } from "./refusal.js";
import type { TransportApp } from "./transport-app.js";

export type TransportName = "http" | "grpc" | "fluent";

export interface RequestPathOptions {
  transport: TransportName;
  /** This transport's in-flight slots. */
  limiter: InflightLimiter;
  /** The process's loop-turn guard (shared by the transports), when on. */
  guard?: LoopTurnGuard;
  /** Bearer token (`auth.token`); every request passes without one. */
  token?: string | undefined;
  /** `limits.max_records_per_request`. */
  maxRecords: number;
  /** Seconds a refused client is told to wait (`http.retry_after_s`, `grpc.retry_after_s`). */
  retryAfterS: number;
  metrics: Metrics;
  logger: Logger;
}

/** Why a request was refused at admission: the code and its table message. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** The shared request path of one transport; see the module comment. */
export class RequestPath {
  readonly transport: TransportName;
  /** Milliseconds a refused client is told to wait. */
  readonly retryAfterMs: number;
  /** Refusals a client can repeat in a loop (401s, overload) are logged first and then counted, one line per code per 10 s. */
  readonly refusalLog: BurstLog;
  private readonly tokenCheck: ((authorization: string | undefined) => boolean) | undefined;
  private closingNow = false;
  private active = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: RequestPathOptions) {
    this.transport = o.transport;
    this.retryAfterMs = o.retryAfterS * 1000;
    this.refusalLog = new BurstLog(o.logger);
    this.tokenCheck = o.token ? createTokenCheck(o.token) : undefined;
  }

  /** True once `close()` was called. */
  get closing(): boolean {
    return this.closingNow;
  }

  /** True when a token is set: requests that need one must `authorize`. */
  get needsToken(): boolean {
    return this.tokenCheck !== undefined;
  }

  /**
   * Checks a request's credential (an `Authorization` value, or a secret `alt` accepts).
   * A refusal is counted and logged (Fluent Bit and Vector drop a batch on 401, so say so).
   */
  authorize(authorization: string | undefined, where: Record<string, unknown>, alt?: () => boolean): boolean {
    if (this.tokenCheck === undefined || this.tokenCheck(authorization) || alt?.() === true) return true;
    this.refusalLog.log("error", "DNSGEO_UNAUTHENTICATED", where, `${this.transport} request refused: missing or wrong bearer token (shippers drop the batch on 401)`);
    this.count("DNSGEO_UNAUTHENTICATED");
    return false;
  }

  /**
   * Admits one request of `client` (an address key, or undefined when slots are not
   * shared by client): undefined when admitted, and `done(client)` must follow once its
   * work has settled; otherwise the refusal, already counted. `behind`: the caller has
   * another reason to say the process is behind (a byte budget that is full). The
   * loop-turn guard is asked here unless `guardAsked` (HTTP asks it for every request,
   * ops ones too, so the turn's first arrival is noted).
   */
  admit(client?: string, behind = false, guardAsked = false): Refusal | undefined {
    if (this.closingNow) return this.refusal("DNSGEO_SHUTTING_DOWN");
    const late = guardAsked ? false : this.o.guard?.exceeded() === true;
    if (behind || late || !this.o.limiter.tryAcquire(client)) return this.refusal("DNSGEO_OVERLOADED");
    this.active++;
    return undefined;
  }

  /** Gives back what `admit(client)` took. */
  done(client?: string): void {
    this.o.limiter.release(client);
    this.settle();
  }

  /**
   * Counts something else `close()` waits for (an open response, a stream between its
   * messages); returns the function that ends it (calls after the first do nothing).
   */
  hold(): () => void {
    this.active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.settle();
    };
  }

  /** Requests admitted and things held, not yet settled. */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Refuses new requests from now on and waits up to `timeoutMs` for those in flight;
   * true when they all settled in time.
   */
  async close(timeoutMs: number): Promise<boolean> {
    this.closingNow = true;
    if (this.active === 0) return true;
    return within(new Promise<void>((resolve) => this.idleWaiters.push(resolve)), timeoutMs);
  }

  /** The enrich options a request asked for, checked: `format` ecs or quicksight, `explode` a boolean or "true"/"false". */
  options(format: string | null | undefined, explode: boolean | string | null | undefined): EnrichOptions {
    const opts: EnrichOptions = {};
    if (format !== null && format !== undefined && format !== "") {
      if (format !== "ecs" && format !== "quicksight") throw new DnsgeoError("DNSGEO_BAD_REQUEST", `format must be ecs or quicksight, got "${format.slice(0, 40)}"`);
      opts.format = format;
    }
    if (typeof explode === "boolean") opts.explode = explode;
    else if (explode !== null && explode !== undefined) {
      if (explode !== "true" && explode !== "false") throw new DnsgeoError("DNSGEO_BAD_REQUEST", "explode must be true or false");
      opts.explode = explode === "true";
    }
    return opts;
  }

  /** Throws DNSGEO_TOO_MANY_RECORDS when `n` `things` (records, IPs, log records) are over `limits.max_records_per_request`. */
  checkCount(n: number, things = "records"): void {
    if (n > this.o.maxRecords) throw new DnsgeoError("DNSGEO_TOO_MANY_RECORDS", `${n} ${things}, limits.max_records_per_request is ${this.o.maxRecords}`);
  }

  /** A refusal with `code`'s table message (or `message`), counted. */
  refusal(code: ErrorCode, message: string = ERROR_CODES[code].message): Refusal {
    this.count(code);
    return { code, message };
  }

  /**
   * What a failed request is answered with: a `DnsgeoError` as it is (logged at a bounded
   * rate), anything else as
   * DNSGEO_INTERNAL (logged with its stack). Counted when it is a refusal.
   */
  failure(e: unknown): DnsgeoError {
    if (e instanceof DnsgeoError) {
      // A batch refused for good is dropped by the shipper: said at error level.
      this.refusalLog.log(isRetryable(e.code) ? "warn" : "error", e.code, { code: e.code, transport: this.transport }, `${this.transport} request refused: ${e.message}`);
      this.count(e.code);
      return e;
    }
    this.o.logger.error({ err: e, transport: this.transport }, "request failed");
    return new DnsgeoError("DNSGEO_INTERNAL");
  }

  private count(code: ErrorCode): void {
    const reason = refusalReason(code);
    if (reason) this.o.metrics.refused.inc({ transport: this.transport, reason });
  }

  private settle(): void {
    this.active--;
    if (this.active === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }
}

/**
 * The request path of one of the app's listeners, set from its config: `auth.token`,
 * `limits.max_records_per_request`, and the listener's `retry_after_s` (the forward
 * protocol has none: a refused chunk comes back on the shipper's own retry schedule).
 */
export function requestPathFor(app: TransportApp, transport: TransportName, limiter: InflightLimiter, guard?: LoopTurnGuard): RequestPath {
  return new RequestPath({
    transport,
    limiter,
    guard,
    token: app.config.auth.token,
    maxRecords: app.config.limits.max_records_per_request,
    retryAfterS: transport === "fluent" ? 0 : app.config[transport].retry_after_s,
    metrics: app.metrics,
    logger: app.logger,
  });
}
