/**
 * The miss path around the cache: what the pipeline calls to get the best
 * answer for each IP within `lookup.deadline_ms` (docs/architecture.md,
 * "Choices that shape the code").
 *
 * 1. The cache chain is asked first (stale rows included); fresh hits are final.
 * 2. Misses join the backfill queue (deduplicated: an IP is never queued or in
 *    flight twice) and are sent to the provider in batches of up to
 *    `batchSize`, gathered over `lingerMs`, whenever the rate limiter allows.
 *    Answers go to the cache (write-through to every tier) and to every caller
 *    waiting for them. Fail answers become negative entries, final as well.
 * 3. At the deadline, what the provider has not answered leaves with the best
 *    offline answer, `final: false`: a stale cache entry (up to `staleMaxS`
 *    past expiry; it came from the provider, so it has ISP and ORG) before
 *    the fallback's (mmdb) answer, or no entry. The IP stays queued and the
 *    next record finds the provider's answer in the cache.
 * 4. Without a provider (`ipapi.enabled: false`) the fallback answer is final,
 *    then a stale entry; a miss everywhere is final with no entry.
 * 5. `wait: true` waits for the provider however long the limiter makes it,
 *    until it answers or fails definitively (banned, or `maxAttempts`
 *    consecutive failed sends for that IP), then falls back as in 3.
 *
 * `lookup` never rejects: any error leaves the IPs without an entry and
 * `final: false`, counted in `dnsgeo_tier_errors_total`.
 */
import type { Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { BackfillQueue } from "./backfill-queue.js";
import { DynamoFleetBudget } from "./fleet-budget.js";
import type { LimiterStore } from "./limiter-store.js";
import { IpApiProvider, ipApiOptionsFromConfig } from "./ipapi-provider.js";
import { ProviderPump, type BatchSource } from "./provider-pump.js";
import type { Clock, Entry, GeoService, IpResult, Lookup, ServiceLookupOptions } from "./lookup.js";
import { nowS, systemClock } from "./lookup.js";
import { RateLimiter, type SharedBudget } from "./rate-limiter.js";

export type { BatchSource } from "./provider-pump.js";
export { MAX_IN_FLIGHT } from "./provider-pump.js";

export interface GeoServiceOptions {
  /** The cache chain (memory → SQLite → DynamoDB), written through on every provider answer. */
  cache: Lookup;
  /** The geo provider; absent when `ipapi.enabled` is false. */
  provider?: BatchSource;
  /** Offline answers (mmdb) used at the deadline, or as the answer when there is no provider. */
  fallback?: Lookup;
  /** Required with a provider. */
  limiter?: RateLimiter;
  /** Required with a provider. */
  queue?: BackfillQueue;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
  /** Longest a lookup waits, milliseconds (`lookup.deadline_ms`). */
  deadlineMs: number;
  /** How long misses gather before a partial batch is sent, milliseconds (`lookup.batch_linger_ms`). */
  lingerMs: number;
  /** IPs per provider request (`ipapi.batch_size`). */
  batchSize: number;
  /** Stale entries are served this long past expiry, seconds (`cache.stale_max_s`). */
  staleMaxS: number;
  /** Longest `close()` waits for in-flight provider requests, milliseconds (`shutdown.timeout_ms`). */
  shutdownTimeoutMs?: number;
  /** Consecutive failed sends of an IP after which its waiters get the offline answer (it stays queued). Default 5. */
  maxAttempts?: number;
  /** Close the provider on `close()` (when the service built it). */
  closeProvider?: boolean;
}

/** Counters for the CLI progress line. */
export interface GeoServiceStats {
  /** IPs waiting for the provider. */
  queueDepth: number;
  /** IPs in provider requests now. */
  inFlight: number;
  /** Provider requests the limiter allows now. */
  limiterRemaining: number;
  banned: boolean;
  /** Provider requests sent. */
  requests: number;
  /** Provider requests that got a usable answer. */
  answeredRequests: number;
  /** Provider requests that failed (network, timeout, non-200, bad body). */
  failedRequests: number;
  /** IPs answered by the provider (positive or negative). */
  answeredIps: number;
  /** IPs dropped from a full backfill queue. */
  dropped: number;
}

/** How long an asynchronous fallback may take once the deadline has passed, milliseconds. */
const FALLBACK_GRACE_MS = 5;

/** `first` when it has geo data, else `second` when that has, else whichever exists. */
function preferPositive(first: Entry | undefined, second: Entry | undefined): Entry | undefined {
  if (first?.geo) return first;
  if (second?.geo) return second;
  return first ?? second;
}

export class DefaultGeoService implements GeoService {
  private readonly clock: Clock;
  /** The provider side; absent without a provider. */
  private readonly pump: ProviderPump | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private loggedError = false;

  constructor(private readonly opts: GeoServiceOptions) {
    this.clock = opts.clock ?? systemClock;
    if (opts.provider) {
      if (!opts.limiter || !opts.queue) throw new TypeError("DefaultGeoService: a provider needs a limiter and a queue");
      this.pump = new ProviderPump({
        provider: opts.provider,
        limiter: opts.limiter,
        queue: opts.queue,
        cache: opts.cache,
        batchSize: opts.batchSize,
        lingerMs: opts.lingerMs,
        maxAttempts: opts.maxAttempts,
        onFault: (tier, e) => this.fault(tier, e),
      });
    }
  }

  async lookup(ips: readonly string[], opts: ServiceLookupOptions = {}): Promise<Map<string, IpResult>> {
    try {
      return await this.run(ips, opts);
    } catch (e) {
      this.fault("lookup", e);
      const out = new Map<string, IpResult>();
      for (const ip of ips) out.set(ip, { final: false });
      return out;
    }
  }

  /**
   * An IP left the backfill queue without an answer (dropped from a full queue): its
   * callers take the offline answer. Wired to the queue's drop hook.
   */
  dropped(ip: string): void {
    this.pump?.release(ip, undefined);
  }

  stats(): GeoServiceStats {
    const l = this.opts.limiter;
    const q = this.opts.queue;
    return {
      queueDepth: q?.size ?? 0,
      inFlight: q?.inFlight ?? 0,
      limiterRemaining: l?.remaining() ?? 0,
      banned: l?.banned ?? false,
      dropped: q?.dropped ?? 0,
      ...(this.pump?.counters ?? { requests: 0, answeredRequests: 0, failedRequests: 0, answeredIps: 0 }),
    };
  }

  /** Resolves once nothing is queued or in flight (tests, `enrich` end of input), or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((this.opts.queue?.size ?? 0) === 0 && !(this.pump?.busy ?? false)) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      await this.pump?.stop(this.opts.shutdownTimeoutMs ?? 10_000);
      if (this.opts.closeProvider) await this.opts.provider?.close?.();
    })();
    return this.closing;
  }

  private async run(asked: readonly string[], opts: ServiceLookupOptions): Promise<Map<string, IpResult>> {
    const out = new Map<string, IpResult>();
    if (asked.length === 0) return out;
    // Warm cache: every IP fresh in memory, answered without a deadline timer or promises
    // (a repeated IP is just set twice here, so only the slow path below needs them distinct).
    const quick = this.opts.cache.getFreshSync?.(asked);
    if (quick) {
      for (let i = 0; i < asked.length; i++) {
        const ip = asked[i] as string;
        out.set(ip, { entry: quick.get(ip), final: true });
      }
      return out;
    }
    const ips = [...new Set(asked)];
    const deadlineMs = opts.deadlineMs ?? this.opts.deadlineMs;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        ac.abort();
        resolve(undefined);
      }, deadlineMs);
    });
    try {
      const cached = await Promise.race([this.safeGet(this.opts.cache, ips, { signal: ac.signal, allowStale: true }), deadline]);
      const now = nowS(this.clock);
      const misses: string[] = [];
      const stale = new Map<string, Entry>();
      for (const ip of ips) {
        const e = cached?.get(ip);
        if (e && !e.stale && e.expiresAt > now) out.set(ip, { entry: e, final: true });
        else {
          if (e && e.expiresAt + this.opts.staleMaxS > now) stale.set(ip, e.stale ? e : Object.assign({}, e, { stale: true }));
          misses.push(ip);
        }
      }
      if (misses.length === 0) return out;

      const pump = this.pump;
      if (!pump || this.closed) {
        const fb = this.opts.fallback ? await Promise.race([this.safeGet(this.opts.fallback, misses), deadline]) : undefined;
        // Without a provider nothing better is coming: whatever is known is final.
        const final = !pump;
        for (const ip of misses) {
          const e = preferPositive(fb?.get(ip), stale.get(ip));
          out.set(ip, e ? { entry: e, final } : { final });
        }
        return out;
      }

      const banned = this.opts.limiter?.banned === true;
      // Answers arriving after the deadline must not change the map the caller already has.
      let open = true;
      const answered = Promise.all(
        misses.map((ip) =>
          pump.answerFor(ip).then((e) => {
            if (open && e) out.set(ip, { entry: e, final: true });
          }),
        ),
      );
      if (opts.wait && !banned) await answered;
      else await Promise.race([answered, deadline]);
      open = false;

      // Asked only now and only for what is left: mmdb answers synchronously in
      // microseconds per IP, and most misses are answered by the provider in time.
      let fbMap: Map<string, Entry> | undefined;
      const fallback = this.opts.fallback;
      // A stale negative entry says only "unknown then": the fallback may know the IP now.
      if (fallback && out.size < ips.length) fbMap = await this.quickGet(fallback, misses.filter((ip) => !out.has(ip) && !stale.get(ip)?.geo));
      for (const ip of misses) {
        if (out.has(ip)) continue;
        const e = preferPositive(stale.get(ip), fbMap?.get(ip));
        out.set(ip, e ? { entry: e, final: false } : { final: false });
      }
      return out;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A fallback's answer when it comes at once (sync, or within `FALLBACK_GRACE_MS`); the deadline has passed already. */
  private async quickGet(l: Lookup, ips: string[]): Promise<Map<string, Entry> | undefined> {
    if (ips.length === 0) return undefined;
    try {
      const r = l.get(ips);
      if (r instanceof Map) return r;
      let t: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((res) => (t = setTimeout(() => res(undefined), FALLBACK_GRACE_MS)));
      const got = await Promise.race([
        r.catch((e: unknown) => {
          this.fault(l.name, e);
          return undefined;
        }),
        late,
      ]);
      clearTimeout(t);
      return got ?? undefined;
    } catch (e) {
      this.fault(l.name, e);
      return undefined;
    }
  }

  private async safeGet(l: Lookup, ips: string[], o?: { signal?: AbortSignal; allowStale?: boolean }): Promise<Map<string, Entry> | undefined> {
    try {
      return await l.get(ips, o);
    } catch (e) {
      this.fault(l.name, e);
      return undefined;
    }
  }

  private fault(tier: string, e: unknown): void {
    this.opts.metrics?.tierErrors.inc({ tier });
    if (!this.loggedError) {
      this.loggedError = true;
      this.opts.logger?.warn({ tier, err: e instanceof Error ? e.message : String(e) }, "geo lookup error skipped over (first one logged, the rest counted)");
    }
  }
}

/** Edges for `geoServiceFromConfig`. */
export interface GeoServiceDeps {
  cache: Lookup;
  fallback?: Lookup;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
  /** Fleet budget (see fleet-budget.ts); built from `dynamoClient` when absent and config asks for one. */
  shared?: SharedBudget;
  /** Client for the fleet budget when `dynamodb.fleet_budget` is on and `dynamodb.table` is set. */
  dynamoClient?: DynamoDBDocumentClient;
  /** A provider to use instead of building an IpApiProvider from config. */
  provider?: BatchSource;
  /** Where the limiter's sends, pause and ban outlive the process (see limiter-store.ts). */
  limiterStore?: LimiterStore;
}

/** Builds the service, its provider, limiter and queue from the frozen config. */
export function geoServiceFromConfig(cfg: Config, deps: GeoServiceDeps): DefaultGeoService {
  const { clock, logger, metrics } = deps;
  const base: GeoServiceOptions = {
    cache: deps.cache,
    fallback: deps.fallback,
    clock,
    logger,
    metrics,
    deadlineMs: cfg.lookup.deadline_ms,
    lingerMs: cfg.lookup.batch_linger_ms,
    batchSize: cfg.ipapi.batch_size,
    staleMaxS: cfg.cache.stale_max_s,
    shutdownTimeoutMs: cfg.shutdown.timeout_ms,
  };
  if (!cfg.ipapi.enabled) return new DefaultGeoService(base);
  let svc: DefaultGeoService | undefined;
  const queue = new BackfillQueue({ max: cfg.lookup.backfill_queue_max, onDrop: (ip: string) => svc?.dropped(ip), metrics, logger });
  let shared = deps.shared;
  if (!shared && deps.dynamoClient && cfg.dynamodb.fleet_budget && cfg.dynamodb.table) {
    shared = new DynamoFleetBudget({
      client: deps.dynamoClient,
      table: cfg.dynamodb.table,
      requestsPerWindow: cfg.ipapi.requests_per_window,
      windowS: cfg.ipapi.window_s,
      callTimeoutMs: cfg.dynamodb.request_timeout_ms,
      clock,
      logger,
      metrics,
    });
  }
  const limiter = new RateLimiter({
    requestsPerWindow: cfg.ipapi.requests_per_window,
    windowS: cfg.ipapi.window_s,
    clock,
    logger,
    metrics,
    shared,
    store: deps.limiterStore,
  });
  const provider = deps.provider ?? new IpApiProvider({ ...ipApiOptionsFromConfig(cfg), clock, logger, metrics });
  svc = new DefaultGeoService({ ...base, provider, limiter, queue, closeProvider: deps.provider === undefined });
  return svc;
}
