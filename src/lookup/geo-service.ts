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
import { setMaxListeners } from "node:events";
import type { Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { BackfillQueue } from "./backfill-queue.js";
import { DynamoFleetBudget } from "./fleet-budget.js";
import type { LimiterStore } from "./limiter-store.js";
import { IpApiProvider, ipApiOptionsFromConfig, ProviderError, type BatchResult } from "./ipapi-provider.js";
import type { Clock, Entry, GeoService, IpResult, Lookup, ServiceLookupOptions } from "./lookup.js";
import { nowS, systemClock } from "./lookup.js";
import { RateLimiter, type SharedBudget } from "./rate-limiter.js";

/** What the service needs from a provider (IpApiProvider has it). */
export interface BatchSource {
  fetchBatch(ips: string[], signal?: AbortSignal): Promise<BatchResult>;
  close?(): Promise<void> | void;
}

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

interface Waiter {
  promise: Promise<Entry | undefined>;
  resolve: (e: Entry | undefined) => void;
}

/** How long a provider answer short-circuits new misses for the same IP (cache writes may still be on their way). */
const RECENT_MS = 60_000;
const RECENT_MAX = 50_000;
/**
 * Provider requests started at once. A request started is on its way even if the
 * limiter pauses a moment later (a 429, `X-Rl: 0`, a 403), so only a few may be
 * out at a time; the next starts when one settles. The provider's connection
 * pool (ipapi-provider.ts) must hold at least this many, or requests would wait
 * inside it and leave after the limiter stopped.
 */
export const MAX_IN_FLIGHT = 2;
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
  private readonly waiters = new Map<string, Waiter>();
  private readonly recent = new Map<string, { entry: Entry; at: number }>();
  private readonly attempts = new Map<string, number>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private pumping = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private loggedError = false;
  private readonly counters = { requests: 0, answeredRequests: 0, failedRequests: 0, answeredIps: 0 };

  constructor(private readonly opts: GeoServiceOptions) {
    this.clock = opts.clock ?? systemClock;
    // Every in-flight provider request listens on this one signal.
    setMaxListeners(0, this.abort.signal);
    if (opts.provider && (!opts.limiter || !opts.queue)) throw new TypeError("DefaultGeoService: a provider needs a limiter and a queue");
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

  stats(): GeoServiceStats {
    const l = this.opts.limiter;
    const q = this.opts.queue;
    return Object.assign(
      {
        queueDepth: q?.size ?? 0,
        inFlight: q?.inFlight ?? 0,
        limiterRemaining: l?.remaining() ?? 0,
        banned: l?.banned ?? false,
        dropped: q?.dropped ?? 0,
      },
      this.counters,
    );
  }

  /** Resolves once nothing is queued or in flight (tests, `enrich` end of input), or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((this.opts.queue?.size ?? 0) === 0 && this.inflight.size === 0) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.closing = (async () => {
      const limit = this.opts.shutdownTimeoutMs ?? 10_000;
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.inflight]), new Promise<void>((r) => (t = setTimeout(r, limit)))]);
      clearTimeout(t);
      this.abort.abort();
      await Promise.race([Promise.allSettled([...this.inflight]), new Promise<void>((r) => (t = setTimeout(r, 100)))]);
      clearTimeout(t);
      for (const w of this.waiters.values()) w.resolve(undefined);
      this.waiters.clear();
      this.opts.queue?.clear();
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

      const provider = this.opts.provider;
      if (!provider || this.closed) {
        const fb = this.opts.fallback ? await Promise.race([this.safeGet(this.opts.fallback, misses), deadline]) : undefined;
        // Without a provider nothing better is coming: whatever is known is final.
        const final = !provider;
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
          this.enqueue(ip).then((e) => {
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

  /** The provider's answer for an IP, or undefined when it failed definitively (or the service closed). */
  private enqueue(ip: string): Promise<Entry | undefined> {
    const r = this.recent.get(ip);
    if (r && Date.now() - r.at < RECENT_MS) return Promise.resolve(r.entry);
    const w = this.waiters.get(ip);
    if (w) return w.promise;
    let resolve!: (e: Entry | undefined) => void;
    const promise = new Promise<Entry | undefined>((res) => (resolve = res));
    this.waiters.set(ip, { promise, resolve });
    (this.opts.queue as BackfillQueue).add(ip);
    this.schedule();
    return promise;
  }

  /** Resolves and forgets the waiter of an IP. Wired to the queue's drop hook by `geoServiceFromConfig`. */
  settle(ip: string, entry: Entry | undefined): void {
    // Dropped from a full queue (or answered): its failed-send count would otherwise stay forever.
    if (!this.opts.queue?.has(ip)) this.attempts.delete(ip);
    const w = this.waiters.get(ip);
    if (!w) return;
    this.waiters.delete(ip);
    w.resolve(entry);
  }

  private schedule(): void {
    if (this.closed) return;
    const q = this.opts.queue as BackfillQueue;
    if (q.size === 0) return;
    const limiter = this.opts.limiter as RateLimiter;
    const delay = Math.max(q.size >= this.opts.batchSize ? 0 : this.opts.lingerMs, limiter.waitMs());
    const at = Date.now() + delay;
    if (this.timer) {
      if (at >= this.timerAt) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pump();
    }, delay);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const q = this.opts.queue as BackfillQueue;
      const limiter = this.opts.limiter as RateLimiter;
      while (!this.closed && q.size > 0) {
        if (this.inflight.size >= MAX_IN_FLIGHT || limiter.waitMs() > 0) break;
        const sentAt = await limiter.acquire();
        if (sentAt === undefined) break;
        const batch = q.take(this.opts.batchSize);
        const p = this.send(batch, sentAt);
        this.inflight.add(p);
        void p.finally(() => {
          this.inflight.delete(p);
          // A slot is free: the next batch may go if the limiter (which has this answer now) allows.
          this.schedule();
        });
      }
    } catch (e) {
      this.fault("ipapi", e);
    } finally {
      this.pumping = false;
    }
    if (!this.timer) this.scheduleAfterPump();
  }

  private scheduleAfterPump(): void {
    const q = this.opts.queue as BackfillQueue;
    // With every slot taken, the settling request re-schedules.
    if (this.closed || q.size === 0 || this.inflight.size >= MAX_IN_FLIGHT) return;
    const limiter = this.opts.limiter as RateLimiter;
    // Whatever is left has waited its linger already; only the limiter holds it now.
    const delay = Math.max(1, limiter.waitMs());
    this.timerAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pump();
    }, delay);
  }

  private async send(batch: string[], sentAt: number): Promise<void> {
    const provider = this.opts.provider as BatchSource;
    const limiter = this.opts.limiter as RateLimiter;
    const q = this.opts.queue as BackfillQueue;
    this.counters.requests++;
    let res: BatchResult;
    try {
      res = await provider.fetchBatch(batch, this.abort.signal);
    } catch (e) {
      this.counters.failedRequests++;
      if (e instanceof ProviderError) {
        const o: Parameters<RateLimiter["update"]>[0] = { status: e.status, error: e.kind, sentAt };
        if (e.rl !== undefined) o.rl = e.rl;
        if (e.ttl !== undefined) o.ttl = e.ttl;
        limiter.update(o);
        // Unreachable (refused, no route, name not found): nothing better is coming soon, so
        // callers waiting for these IPs (`--wait`, `dnsgeo lookup`) get the offline answer now;
        // the IPs stay queued and the cache fills when the provider is back.
        if (e.kind === "connect") for (const ip of batch) this.settle(ip, undefined);
      } else {
        limiter.update({ status: 0, error: "network", sentAt });
        this.fault("ipapi", e);
      }
      this.retry(batch, true);
      return;
    }
    const o: Parameters<RateLimiter["update"]>[0] = { status: res.status, sentAt };
    if (res.rl !== undefined) o.rl = res.rl;
    if (res.ttl !== undefined) o.ttl = res.ttl;
    limiter.update(o);
    if (res.status !== 200) {
      this.counters.failedRequests++;
      if (res.status === 403) {
        // Banned: nobody should wait an hour for the cool-down.
        for (const ip of batch) this.settle(ip, undefined);
        for (const ip of [...this.waiters.keys()]) this.settle(ip, undefined);
      }
      // 429 and 403 are the limiter's business, not the IPs'; another 4xx will not get better by retrying.
      const permanent = res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 403;
      this.retry(batch, res.status !== 429 && res.status !== 403, permanent);
      return;
    }
    this.counters.answeredRequests++;
    this.counters.answeredIps += res.entries.length;
    const at = Date.now();
    for (const e of res.entries) this.recent.set(e.ip, { entry: e, at });
    this.pruneRecent(at);
    q.done(batch);
    for (const ip of batch) this.attempts.delete(ip);
    for (const e of res.entries) this.settle(e.ip, e);
    this.schedule();
    try {
      await this.opts.cache.set(res.entries);
    } catch (e) {
      this.fault(this.opts.cache.name, e);
    }
  }

  /**
   * Puts a failed batch back. IPs past `maxAttempts` release their waiters and
   * stay queued (the provider may come back), unless the failure is permanent.
   */
  private retry(batch: string[], countAttempt: boolean, permanent = false): void {
    const q = this.opts.queue as BackfillQueue;
    const max = this.opts.maxAttempts ?? 5;
    const back: string[] = [];
    const gone: string[] = [];
    for (const ip of batch) {
      const n = countAttempt ? (this.attempts.get(ip) ?? 0) + 1 : (this.attempts.get(ip) ?? 0);
      if (countAttempt) this.attempts.set(ip, n);
      if (n >= max) this.settle(ip, undefined);
      if (this.closed || (permanent && n >= max)) {
        gone.push(ip);
        this.attempts.delete(ip);
      } else back.push(ip);
    }
    q.done(gone);
    q.requeue(back);
    this.schedule();
  }

  private pruneRecent(now: number): void {
    for (const [ip, r] of this.recent) {
      if (this.recent.size <= RECENT_MAX && now - r.at < RECENT_MS) break;
      this.recent.delete(ip);
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
  const base: GeoServiceOptions = {
    cache: deps.cache,
    deadlineMs: cfg.lookup.deadline_ms,
    lingerMs: cfg.lookup.batch_linger_ms,
    batchSize: cfg.ipapi.batch_size,
    staleMaxS: cfg.cache.stale_max_s,
    shutdownTimeoutMs: cfg.shutdown.timeout_ms,
  };
  if (deps.fallback) base.fallback = deps.fallback;
  if (deps.clock) base.clock = deps.clock;
  if (deps.logger) base.logger = deps.logger;
  if (deps.metrics) base.metrics = deps.metrics;
  if (!cfg.ipapi.enabled) return new DefaultGeoService(base);
  let svc: DefaultGeoService | undefined;
  const queue = new BackfillQueue(
    Object.assign(
      { max: cfg.lookup.backfill_queue_max, onDrop: (ip: string) => svc?.settle(ip, undefined) },
      deps.metrics ? { metrics: deps.metrics } : {},
      deps.logger ? { logger: deps.logger } : {},
    ),
  );
  let shared = deps.shared;
  if (!shared && deps.dynamoClient && cfg.dynamodb.fleet_budget && cfg.dynamodb.table) {
    shared = new DynamoFleetBudget(
      Object.assign(
        {
          client: deps.dynamoClient,
          table: cfg.dynamodb.table,
          requestsPerWindow: cfg.ipapi.requests_per_window,
          windowS: cfg.ipapi.window_s,
          callTimeoutMs: cfg.dynamodb.request_timeout_ms,
        },
        deps.clock ? { clock: deps.clock } : {},
        deps.logger ? { logger: deps.logger } : {},
        deps.metrics ? { metrics: deps.metrics } : {},
      ),
    );
  }
  const limiter = new RateLimiter(
    Object.assign(
      { requestsPerWindow: cfg.ipapi.requests_per_window, windowS: cfg.ipapi.window_s },
      deps.clock ? { clock: deps.clock } : {},
      deps.logger ? { logger: deps.logger } : {},
      deps.metrics ? { metrics: deps.metrics } : {},
      shared ? { shared } : {},
      deps.limiterStore ? { store: deps.limiterStore } : {},
    ),
  );
  const provider =
    deps.provider ??
    new IpApiProvider(
      Object.assign(
        ipApiOptionsFromConfig(cfg),
        deps.clock ? { clock: deps.clock } : {},
        deps.logger ? { logger: deps.logger } : {},
        deps.metrics ? { metrics: deps.metrics } : {},
      ),
    );
  svc = new DefaultGeoService(Object.assign(base, { provider, limiter, queue, closeProvider: deps.provider === undefined }));
  return svc;
}
