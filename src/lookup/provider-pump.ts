/**
 * The provider side of the miss path: IPs the cache did not have wait here for the
 * geo provider (ip-api). `DefaultGeoService` decides what a caller gets by its deadline;
 * this unit only gets answers from the provider, within its limits:
 *
 * - an IP is never queued or in flight twice: callers asking for the same IP share one
 *   promise (`answerFor`), and an answer stays "recent" for a minute so an IP asked
 *   again before the cache writes land is not sent again;
 * - batches of up to `batchSize` go out when `lingerMs` has gathered them or the
 *   queue holds a full batch, whenever the rate limiter allows, at most
 *   `MAX_IN_FLIGHT` at a time;
 * - answers are written through the cache and handed to every waiting caller;
 * - a failed batch goes back to the queue (`requeueFailed`); an IP whose sends failed
 *   `maxAttempts` times in a row releases its callers (they take the offline answer)
 *   and stays queued, unless the failure cannot get better (a 4xx other than 429/403).
 */
import { setMaxListeners } from "node:events";
import type { BackfillQueue } from "./backfill-queue.js";
import { ProviderError, type BatchResult } from "./ipapi-provider.js";
import type { Entry, Lookup } from "./lookup.js";
import type { RateLimiter } from "./rate-limiter.js";

/** What the pump needs from a provider (IpApiProvider has it). */
export interface BatchSource {
  fetchBatch(ips: string[], signal?: AbortSignal): Promise<BatchResult>;
  close?(): Promise<void> | void;
}

/**
 * Provider requests started at once. A request started is on its way even if the
 * limiter pauses a moment later (a 429, `X-Rl: 0`, a 403), so only a few may be
 * out at a time; the next starts when one settles. The provider's connection
 * pool (ipapi-provider.ts) must hold at least this many, or requests would wait
 * inside it and leave after the limiter stopped.
 */
export const MAX_IN_FLIGHT = 2;
/** How long a provider answer short-circuits new misses for the same IP (cache writes may still be on their way). */
const RECENT_MS = 60_000;
const RECENT_MAX = 50_000;

export interface ProviderPumpOptions {
  provider: BatchSource;
  limiter: RateLimiter;
  queue: BackfillQueue;
  /** Where answers are written through (the cache chain). */
  cache: Lookup;
  /** IPs per provider request (`ipapi.batch_size`). */
  batchSize: number;
  /** How long misses gather before a partial batch is sent, milliseconds (`lookup.batch_linger_ms`). */
  lingerMs: number;
  /** Consecutive failed sends of an IP after which its callers are released (it stays queued). Default 5. */
  maxAttempts?: number;
  /** Called for errors that are skipped over (a cache write, an unexpected throw). */
  onFault(tier: string, e: unknown): void;
}

/** Provider request counters (the CLI's progress line). */
export interface PumpCounters {
  /** Provider requests sent. */
  requests: number;
  /** Provider requests that got a usable answer. */
  answeredRequests: number;
  /** Provider requests that failed (network, timeout, non-200, bad body). */
  failedRequests: number;
  /** IPs answered by the provider (positive or negative). */
  answeredIps: number;
}

interface Waiter {
  promise: Promise<Entry | undefined>;
  resolve: (e: Entry | undefined) => void;
}

export class ProviderPump {
  readonly counters: PumpCounters = { requests: 0, answeredRequests: 0, failedRequests: 0, answeredIps: 0 };
  private readonly waiters = new Map<string, Waiter>();
  private readonly recent = new Map<string, { entry: Entry; at: number }>();
  private readonly attempts = new Map<string, number>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private pumping = false;
  private stopped = false;

  constructor(private readonly opts: ProviderPumpOptions) {
    // Every in-flight provider request listens on this one signal.
    setMaxListeners(0, this.abort.signal);
  }

  /** True while a provider request is out. */
  get busy(): boolean {
    return this.inflight.size > 0;
  }

  /** The provider's answer for an IP, or undefined when it failed definitively (or the pump stopped). */
  answerFor(ip: string): Promise<Entry | undefined> {
    const r = this.recent.get(ip);
    if (r && Date.now() - r.at < RECENT_MS) return Promise.resolve(r.entry);
    const w = this.waiters.get(ip);
    if (w) return w.promise;
    let resolve!: (e: Entry | undefined) => void;
    const promise = new Promise<Entry | undefined>((res) => (resolve = res));
    this.waiters.set(ip, { promise, resolve });
    this.opts.queue.add(ip);
    this.schedule();
    return promise;
  }

  /**
   * Hands `entry` (undefined: no provider answer is coming for now) to the callers
   * waiting for `ip`. Wired to the queue's drop hook, so an IP dropped from a full queue
   * releases its callers.
   */
  release(ip: string, entry: Entry | undefined): void {
    // Dropped from a full queue (or answered): its failed-send count would otherwise stay forever.
    if (!this.opts.queue.has(ip)) this.attempts.delete(ip);
    const w = this.waiters.get(ip);
    if (!w) return;
    this.waiters.delete(ip);
    w.resolve(entry);
  }

  /**
   * Stops sending: waits up to `timeoutMs` for requests in flight, aborts the rest,
   * releases every caller and empties the queue.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise<void>((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
    this.abort.abort();
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise<void>((r) => (t = setTimeout(r, 100)))]);
    clearTimeout(t);
    for (const w of this.waiters.values()) w.resolve(undefined);
    this.waiters.clear();
    this.opts.queue.clear();
  }

  private schedule(): void {
    const q = this.opts.queue;
    if (this.stopped || q.size === 0) return;
    const delay = Math.max(q.size >= this.opts.batchSize ? 0 : this.opts.lingerMs, this.opts.limiter.waitMs());
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
    const { queue: q, limiter } = this.opts;
    try {
      while (!this.stopped && q.size > 0) {
        if (this.inflight.size >= MAX_IN_FLIGHT || limiter.waitMs() > 0) break;
        const sentAt = await limiter.acquire();
        if (sentAt === undefined) break;
        const p = this.send(q.take(this.opts.batchSize), sentAt);
        this.inflight.add(p);
        void p.finally(() => {
          this.inflight.delete(p);
          // A slot is free: the next batch may go if the limiter (which has this answer now) allows.
          this.schedule();
        });
      }
    } catch (e) {
      this.opts.onFault("ipapi", e);
    } finally {
      this.pumping = false;
    }
    if (!this.timer) this.scheduleAfterPump();
  }

  private scheduleAfterPump(): void {
    // With every slot taken, the settling request re-schedules.
    if (this.stopped || this.opts.queue.size === 0 || this.inflight.size >= MAX_IN_FLIGHT) return;
    // Whatever is left has waited its linger already; only the limiter holds it now.
    const delay = Math.max(1, this.opts.limiter.waitMs());
    this.timerAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pump();
    }, delay);
  }

  private async send(batch: string[], sentAt: number): Promise<void> {
    const { provider, limiter, queue: q } = this.opts;
    this.counters.requests++;
    let res: BatchResult;
    try {
      res = await provider.fetchBatch(batch, this.abort.signal);
    } catch (e) {
      this.counters.failedRequests++;
      if (e instanceof ProviderError) {
        limiter.update({ status: e.status, error: e.kind, sentAt, rl: e.rl, ttl: e.ttl });
        // Unreachable (refused, no route, name not found): nothing better is coming soon, so
        // callers waiting for these IPs (`--wait`, `dnsgeo lookup`) get the offline answer now;
        // the IPs stay queued and the cache fills when the provider is back.
        if (e.kind === "connect") for (const ip of batch) this.release(ip, undefined);
      } else {
        limiter.update({ status: 0, error: "network", sentAt });
        this.opts.onFault("ipapi", e);
      }
      this.requeueFailed(batch, true);
      return;
    }
    limiter.update({ status: res.status, sentAt, rl: res.rl, ttl: res.ttl });
    if (res.status !== 200) {
      this.counters.failedRequests++;
      if (res.status === 403) {
        // Banned: nobody should wait an hour for the cool-down.
        for (const ip of batch) this.release(ip, undefined);
        for (const ip of [...this.waiters.keys()]) this.release(ip, undefined);
      }
      // 429 and 403 are the limiter's business, not the IPs'; another 4xx will not get better by retrying.
      const permanent = res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 403;
      this.requeueFailed(batch, res.status !== 429 && res.status !== 403, permanent);
      return;
    }
    this.counters.answeredRequests++;
    this.counters.answeredIps += res.entries.length;
    const at = Date.now();
    for (const e of res.entries) this.recent.set(e.ip, { entry: e, at });
    this.pruneRecent(at);
    q.done(batch);
    for (const ip of batch) this.attempts.delete(ip);
    for (const e of res.entries) this.release(e.ip, e);
    this.schedule();
    try {
      await this.opts.cache.set(res.entries);
    } catch (e) {
      this.opts.onFault(this.opts.cache.name, e);
    }
  }

  /**
   * Puts a failed batch back in the queue. IPs past `maxAttempts` release their callers
   * and stay queued (the provider may come back), unless the failure is permanent.
   */
  private requeueFailed(batch: string[], countAttempt: boolean, permanent = false): void {
    const q = this.opts.queue;
    const max = this.opts.maxAttempts ?? 5;
    const back: string[] = [];
    const gone: string[] = [];
    for (const ip of batch) {
      const n = countAttempt ? (this.attempts.get(ip) ?? 0) + 1 : (this.attempts.get(ip) ?? 0);
      if (countAttempt) this.attempts.set(ip, n);
      if (n >= max) this.release(ip, undefined);
      if (this.stopped || (permanent && n >= max)) {
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
}
