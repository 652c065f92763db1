/**
 * The ip-api request budget. ip-api allows a number of batch requests per
 * window per egress IP and bans hosts that keep sending after a 429
 * (docs/caching.md, "ip-api limits"), so every send asks this limiter first and
 * every answer (or failure) is reported back through `update`.
 *
 * Rules, in the order they are checked:
 * - banned (HTTP 403): nothing is sent for `bannedCooldownMs` (default 1 h);
 *   ip-api bans are usually permanent, so after the cool-down one probe request
 *   is let through and another 403 starts a new cool-down. One request an hour
 *   cannot make a ban worse, and a lifted ban resumes service without a restart.
 * - paused: `X-Rl: 0` or a 429 stop all sends until `X-Ttl` has passed
 *   (a 429 without `X-Ttl` pauses a whole window).
 * - backoff: network errors, timeouts, 5xx and unreadable bodies back off
 *   exponentially with jitter; a success clears it.
 * - budget: at most `requestsPerWindow` sends in any sliding span of
 *   `windowS` (+ a small margin), each send stamped with the time its answer
 *   came (the latest moment the server can have counted it). A sliding log
 *   is stricter than any fixed window the server may use, so it holds
 *   whatever the server's window start is. The server's own `X-Rl` count, when lower,
 *   wins until its window resets.
 *
 * A send that never reached the server (connection refused, connect timeout)
 * is refunded: ip-api only counts requests it received. A timeout after the
 * request was written is not refunded, because the server may have counted it.
 * No failed send is ever counted as a success.
 */
import type { Clock } from "./lookup.js";
import { systemClock } from "./lookup.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { LimiterState, LimiterStore } from "./limiter-store.js";

/** Why a send failed without an HTTP answer. */
export type SendFailure = "connect" | "timeout" | "network" | "body";

/** What one send produced, reported back to the limiter. */
export interface SendOutcome {
  /** HTTP status; 0 when there was no HTTP answer. */
  status: number;
  /** `X-Rl` header: requests left in the server's window. */
  rl?: number;
  /** `X-Ttl` header: seconds until the server's window resets. */
  ttl?: number;
  /** Set when the send failed without a usable answer. */
  error?: SendFailure;
  /** The clock time `tryAcquire` returned true for; lets a refund remove the right send. */
  sentAt?: number;
}

/** A shared budget consulted after the local one (see fleet-budget.ts). */
export interface SharedBudget {
  /**
   * Takes one request from the shared window. `ok: false` with `retryAtMs`
   * (clock time) when the fleet's window is used up. Never rejects: when the
   * shared store is unreachable it answers `ok: true` (local budget only).
   */
  tryAcquire(): Promise<{ ok: boolean; retryAtMs?: number }>;
}

export interface RateLimiterOptions {
  /** Batch requests allowed per window (ip-api free: 15). */
  requestsPerWindow: number;
  /** Window length, seconds (ip-api: 60). */
  windowS: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
  /** Pause after a 403 before one probe request, milliseconds. Default 1 h. */
  bannedCooldownMs?: number;
  /** First backoff after a failed send, milliseconds. Default 500. */
  backoffBaseMs?: number;
  /** Longest backoff, milliseconds. Default 30 000. */
  backoffMaxMs?: number;
  /** Extra spacing added to each window and each `X-Ttl` for network delay, milliseconds. Default min(1000, window/20). */
  marginMs?: number;
  /** Random source for jitter, [0, 1). */
  random?: () => number;
  /** Optional fleet-wide budget. */
  shared?: SharedBudget;
  /**
   * Where sends, pause and ban outlive the process (see limiter-store.ts):
   * loaded at start and merged in before every send, saved after every change.
   */
  store?: LimiterStore;
}

/** Limiter counters, for the CLI progress line and tests. */
export interface RateLimiterStats {
  /** Sends allowed now (0 while paused, banned or backing off). */
  remaining: number;
  /** Sends that got a usable 200 answer. */
  successes: number;
  /** Sends that failed (no answer, non-200, unreadable body). */
  failures: number;
  /** Sends refunded because they never reached the server. */
  refunds: number;
  status429: number;
  banned: boolean;
}

const PROVIDER = "ipapi";

export class RateLimiter {
  private readonly clock: Clock;
  private readonly windowMs: number;
  private readonly max: number;
  private readonly marginMs: number;
  private readonly bannedCooldownMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly random: () => number;
  /** Answer times of answered sends in the current sliding window, oldest first. */
  private sends: number[] = [];
  /** Allow times of sends not answered yet; they count against the budget until answered, however long that takes. */
  private open: number[] = [];
  /** Server-reported requests left, valid until `serverResetAt`. */
  private serverLeft: number | undefined;
  private serverResetAt = 0;
  private pausedUntil = 0;
  private bannedUntil = 0;
  /** After a ban: one send at a time until one succeeds. */
  private probing = false;
  /**
   * Times this process wrote to the store. An open send is saved at its allow
   * time and later moved to its answer time; reading the old time back from
   * the store must not count it a second time as another process's send.
   */
  private readonly written = new Set<number>();
  private backoffUntil = 0;
  private consecutiveFailures = 0;
  private logged429 = false;
  private counters = { successes: 0, failures: 0, refunds: 0, status429: 0 };

  constructor(private readonly opts: RateLimiterOptions) {
    this.clock = opts.clock ?? systemClock;
    this.windowMs = opts.windowS * 1000;
    this.max = opts.requestsPerWindow;
    this.marginMs = opts.marginMs ?? Math.min(1000, Math.round(this.windowMs / 20));
    this.bannedCooldownMs = opts.bannedCooldownMs ?? 3_600_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 500;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.random = opts.random ?? Math.random;
    this.merge();
    if (this.bannedUntil > this.clock.now()) this.probing = true;
    this.gauge();
  }

  /** True while a 403 cool-down runs. */
  get banned(): boolean {
    return this.clock.now() < this.bannedUntil;
  }

  /** Milliseconds until a send may be allowed; 0 when `tryAcquire` would succeed now. */
  waitMs(): number {
    const now = this.clock.now();
    this.expire(now);
    let until = Math.max(this.bannedUntil, this.pausedUntil, this.backoffUntil);
    if (this.probing && this.open.length > 0) until = Math.max(until, now + this.windowMs);
    const over = this.sends.length + this.open.length - this.max;
    if (over >= 0) {
      // Answered sends free their slots a window after their answer; with none
      // to free, only an answer (which re-schedules the caller) can.
      const freeing = this.sends[over];
      until = Math.max(until, freeing !== undefined ? freeing + this.windowMs + this.marginMs : now + this.windowMs);
    }
    if (this.serverLeft !== undefined && this.serverLeft <= 0 && now < this.serverResetAt) {
      until = Math.max(until, this.serverResetAt);
    }
    return Math.max(0, until - now);
  }

  /** Takes one send from the budget when allowed now. */
  tryAcquire(): boolean {
    this.merge();
    if (this.waitMs() > 0) return false;
    this.open.push(this.clock.now());
    if (this.serverLeft !== undefined) this.serverLeft--;
    this.persist();
    this.gauge();
    return true;
  }

  /**
   * `tryAcquire`, then the shared budget when one is configured. When the fleet
   * says no, the local send is handed back and sends pause until the fleet's
   * window turns. Returns the clock time of the send, or undefined.
   */
  async acquire(): Promise<number | undefined> {
    if (!this.tryAcquire()) return undefined;
    const sentAt = this.open[this.open.length - 1] as number;
    if (!this.opts.shared) return sentAt;
    const res = await this.opts.shared.tryAcquire();
    if (res.ok) return sentAt;
    this.merge();
    this.refund(sentAt);
    this.pausedUntil = Math.max(this.pausedUntil, res.retryAtMs ?? this.clock.now() + this.marginMs);
    this.persist();
    this.gauge();
    return undefined;
  }

  /** Reports one send's outcome: headers, status or failure. */
  update(o: SendOutcome): void {
    // Before saving, take in what others saved since, or the save would erase their sends.
    this.merge();
    this.apply(o);
    this.persist();
  }

  private apply(o: SendOutcome): void {
    const now = this.clock.now();
    if (o.error === "connect") {
      this.refund(o.sentAt);
      this.counters.refunds++;
    } else this.answered(o.sentAt, now);
    if (o.rl !== undefined && Number.isFinite(o.rl)) {
      // Requests still in flight may or may not be in the server's count: assume they are not yet.
      const left = o.rl - this.open.length;
      const resetAt = now + (o.ttl !== undefined && Number.isFinite(o.ttl) ? o.ttl * 1000 : this.windowMs) + this.marginMs;
      if (this.serverLeft !== undefined && now < this.serverResetAt) {
        // Same server window: an older answer arriving late must not raise the count.
        this.serverLeft = Math.min(this.serverLeft, left);
        this.serverResetAt = Math.max(this.serverResetAt, resetAt);
      } else {
        this.serverLeft = left;
        this.serverResetAt = resetAt;
      }
      if (o.rl <= 0) this.pausedUntil = Math.max(this.pausedUntil, this.serverResetAt);
    }
    if (o.status === 200 && o.error === undefined) {
      this.counters.successes++;
      this.consecutiveFailures = 0;
      this.backoffUntil = 0;
      this.probing = false;
      this.logged429 = false;
      this.gauge();
      return;
    }
    this.counters.failures++;
    if (o.status === 429) {
      this.counters.status429++;
      const ttlMs = o.ttl !== undefined && Number.isFinite(o.ttl) ? o.ttl * 1000 : this.windowMs;
      this.pausedUntil = Math.max(this.pausedUntil, now + ttlMs + this.marginMs);
      if (!this.logged429) {
        this.logged429 = true;
        this.opts.logger?.warn({ provider: PROVIDER, ttl_s: o.ttl }, "ip-api answered 429 (rate limit broken); pausing provider calls until its window resets");
      }
    } else if (o.status === 403) {
      this.bannedUntil = now + this.bannedCooldownMs;
      this.probing = true;
      this.opts.logger?.error(
        { provider: PROVIDER, cooldown_s: Math.round(this.bannedCooldownMs / 1000) },
        "ip-api answered 403: this egress IP is banned; provider calls stopped (one probe after the cool-down); see ip-api's unban page",
      );
    } else {
      this.consecutiveFailures++;
      const exp = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(20, this.consecutiveFailures - 1));
      // Jitter in [exp/2, exp) so a fleet that failed together does not retry together.
      this.backoffUntil = now + Math.round(exp / 2 + (this.random() * exp) / 2);
    }
    this.gauge();
  }

  /** Sends allowed right now. */
  remaining(): number {
    if (this.waitMs() > 0) return 0;
    let left = this.max - this.sends.length - this.open.length;
    if (this.serverLeft !== undefined && this.clock.now() < this.serverResetAt) left = Math.min(left, this.serverLeft);
    return Math.max(0, left);
  }

  stats(): RateLimiterStats {
    return Object.assign({ remaining: this.remaining(), banned: this.banned }, this.counters);
  }

  /** Index in `open` of the send allowed at `sentAt` (the oldest open one when unknown). */
  private openIndex(sentAt: number | undefined): number {
    if (this.open.length === 0) return -1;
    if (sentAt === undefined) return 0;
    const i = this.open.indexOf(sentAt);
    return i >= 0 ? i : 0;
  }

  /**
   * Moves a send from open to answered, stamped with its answer time: the
   * server counted it somewhere in between, and a busy event loop may have
   * held the request back, so the answer time is the safe end of its window.
   */
  private answered(sentAt: number | undefined, now: number): void {
    const i = this.openIndex(sentAt);
    if (i >= 0) this.open.splice(i, 1);
    let j = this.sends.length;
    while (j > 0 && (this.sends[j - 1] as number) > now) j--;
    this.sends.splice(j, 0, now);
  }

  /** Forgets a send that never reached the server. */
  private refund(sentAt: number | undefined): void {
    const i = this.openIndex(sentAt);
    if (i >= 0) this.open.splice(i, 1);
    if (this.serverLeft !== undefined) this.serverLeft++;
  }

  private expire(now: number): void {
    const cutoff = now - this.windowMs - this.marginMs;
    let n = 0;
    while (n < this.sends.length && (this.sends[n] as number) <= cutoff) n++;
    if (n > 0) this.sends.splice(0, n);
    if (this.serverLeft !== undefined && now >= this.serverResetAt) this.serverLeft = undefined;
  }

  /**
   * Takes in what the store knows (another process's or an earlier run's sends):
   * sends not known here yet count as answered at their stored time.
   */
  private merge(): void {
    const st = this.opts.store?.load();
    if (!st) return;
    const now = this.clock.now();
    const cutoff = now - this.windowMs - this.marginMs;
    const known = new Set<number>(this.sends);
    for (const t of this.open) known.add(t);
    let added = false;
    for (const t of st.sends) {
      if (t > cutoff && t <= now + this.marginMs && !known.has(t) && !this.written.has(t)) {
        this.sends.push(t);
        added = true;
      }
    }
    if (added) this.sends.sort((a, b) => a - b);
    this.pausedUntil = Math.max(this.pausedUntil, st.pausedUntil);
    if (st.probing) this.probing = true;
    if (st.bannedUntil > this.bannedUntil) {
      this.bannedUntil = st.bannedUntil;
      if (st.bannedUntil > now) this.probing = true;
    }
  }

  private persist(): void {
    if (!this.opts.store) return;
    const st: LimiterState = { sends: this.sends.concat(this.open), pausedUntil: this.pausedUntil, bannedUntil: this.bannedUntil };
    if (this.probing) st.probing = true;
    this.opts.store.save(st);
    const cutoff = this.clock.now() - this.windowMs - this.marginMs;
    for (const t of this.written) if (t <= cutoff) this.written.delete(t);
    for (const t of st.sends) this.written.add(t);
  }

  private gauge(): void {
    this.opts.metrics?.limiterRemaining.set({ provider: PROVIDER }, this.remaining());
  }
}
