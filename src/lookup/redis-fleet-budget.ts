/**
 * The fleet ip-api budget on Redis/Valkey (`cache.redis.fleet_budget`): the
 * processes behind one NAT share ip-api's per-egress-IP limit through one
 * counter per window, `<key_prefix>budget:<window start, epoch s>`, taken
 * with INCR and given an EXPIRE in the same MULTI so no counter outlives its
 * window by more than one window. A send is allowed while the count after
 * INCR is at most the window's budget; refused attempts still count, which
 * only makes the fleet more careful until the window ends. Windows are
 * aligned to epoch multiples of `window_s`, as in the DynamoDB budget, and
 * the same caveats hold (the `X-Rl` headers and each process's own limiter
 * still apply).
 *
 * When Redis cannot be reached in `callTimeoutMs` the budget answers yes:
 * the local limiter alone then guards the limit, and lookups never wait on a
 * down server.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { type Clock, systemClock } from "./lookup.js";
import type { SharedBudget } from "./rate-limiter.js";

export interface RedisFleetBudgetOptions {
  client: Redis;
  /** The tier's key prefix; budget keys live beside the cached IPs, never colliding with one. */
  keyPrefix: string;
  /** Batch requests the whole fleet may send per window. */
  requestsPerWindow: number;
  windowS: number;
  /** Longest the counter update may take, milliseconds. */
  callTimeoutMs: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
}

export class RedisFleetBudget implements SharedBudget {
  private readonly clock: Clock;
  private loggedDown = false;

  constructor(private readonly opts: RedisFleetBudgetOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** The counter's key for the window holding `nowS`. */
  keyFor(nowS: number): string {
    return `${this.opts.keyPrefix}budget:${nowS - (nowS % this.opts.windowS)}`;
  }

  async tryAcquire(): Promise<{ ok: boolean; retryAtMs?: number }> {
    const nowS = Math.floor(this.clock.now() / 1000);
    const start = nowS - (nowS % this.opts.windowS);
    const end = start + this.opts.windowS;
    const key = this.keyFor(nowS);
    try {
      const exec = this.opts.client.multi().incr(key).expire(key, 2 * this.opts.windowS).exec();
      exec.catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis fleet budget: no answer in ${this.opts.callTimeoutMs} ms`)), this.opts.callTimeoutMs);
      });
      const res = await Promise.race([exec, timeout]).finally(() => clearTimeout(timer));
      const first = res?.[0];
      if (!first || first[0]) throw first?.[0] ?? new Error("redis fleet budget: empty reply");
      this.loggedDown = false;
      const n = Number(first[1]);
      return n <= this.opts.requestsPerWindow ? { ok: true } : { ok: false, retryAtMs: end * 1000 };
    } catch (e) {
      this.opts.metrics?.tierErrors.inc({ tier: "redis" });
      if (!this.loggedDown) {
        this.loggedDown = true;
        this.opts.logger?.warn({ err: e instanceof Error ? e.message : String(e) }, "fleet budget unreachable; using the local ip-api budget only");
      }
      return { ok: true };
    }
  }
}
