/**
 * The policy webhook (`policy.alert.*`): one POST per (source address, rule) within
 * `dedup_s`, queued and sent in the background so a record never waits for it. The
 * queue is bounded (new alerts are dropped past it, counted and logged once per 10 s);
 * a failed POST (no answer, 429, 5xx) is retried with backoff, other answers are final.
 */
import { request } from "undici";
import { headerObject, type Config } from "../config.js";
import { BurstLog } from "../lookup/burst-log.js";
import { systemClock, type Clock } from "../lookup/lookup.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";

/** The JSON body of one alert. */
export interface PolicyAlert {
  rule: string;
  tag: string;
  /** The record's source address (`srcaddr`, `source.ip`, `client.ip`, Zeek `id.orig_h`, OCSF `src_endpoint.ip`); "" when it has none. */
  source: string;
  query_name?: string;
  /** The first answer IP that matched (absent for a rule on the query name alone). */
  answer_ip?: string;
  /** When dnsgeo saw the match, ISO 8601. */
  at: string;
}

/** Pairs remembered at most; past it the oldest are forgotten (they may alert again). */
const DEDUP_MAX = 100_000;
const CONCURRENCY = 2;

export interface AlertSenderOptions {
  alert: Config["policy"]["alert"];
  logger?: Logger;
  metrics?: Metrics;
  clock?: Clock;
}

export class AlertSender {
  private readonly url: string;
  private readonly cfg: Config["policy"]["alert"];
  private readonly seen = new Map<string, number>();
  private readonly queue: PolicyAlert[] = [];
  private readonly clock: Clock;
  private readonly burst: BurstLog | undefined;
  private readonly headers: Record<string, string>;
  private readonly abort = new AbortController();
  private running = 0;
  private closed = false;
  private readonly idle = new Set<() => void>();

  constructor(private readonly opts: AlertSenderOptions & { url: string }) {
    this.url = opts.url;
    this.cfg = opts.alert;
    this.clock = opts.clock ?? systemClock;
    this.burst = opts.logger ? new BurstLog(opts.logger, 10_000, this.clock) : undefined;
    this.headers = Object.assign(headerObject(opts.alert.headers), { "content-type": "application/json" });
  }

  /** Queues an alert unless the pair alerted within the window; O(1), never waits. */
  offer(alert: PolicyAlert): void {
    if (this.closed) return;
    const key = `${alert.source}\u0000${alert.rule}`;
    const now = this.clock.now();
    const until = this.seen.get(key);
    if (until !== undefined && until > now) {
      this.opts.metrics?.policyAlerts.inc({ outcome: "deduplicated" });
      return;
    }
    if (this.queue.length >= this.cfg.queue_max) {
      this.opts.metrics?.policyAlerts.inc({ outcome: "dropped" });
      this.burst?.warn("policy_alert_dropped", { queue_max: this.cfg.queue_max }, "policy alert queue full; alert dropped");
      return;
    }
    this.seen.delete(key);
    this.seen.set(key, now + this.cfg.dedup_s * 1000);
    // Past the bound the oldest pairs go (insertion order is expiry order: one window for all), down to 90%: amortized O(1).
    if (this.seen.size > DEDUP_MAX) {
      for (const k of this.seen.keys()) {
        if (this.seen.size <= DEDUP_MAX * 0.9) break;
        this.seen.delete(k);
      }
    }
    this.queue.push(alert);
    this.opts.metrics?.queueDepth.set({ queue: "policy_alert" }, this.queue.length);
    if (this.running < CONCURRENCY) void this.work();
  }

  /** Alerts waiting or being sent. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  private async work(): Promise<void> {
    this.running++;
    try {
      for (let a = this.queue.shift(); a !== undefined && !this.closed; a = this.queue.shift()) {
        this.opts.metrics?.queueDepth.set({ queue: "policy_alert" }, this.queue.length);
        await this.send(a);
      }
    } finally {
      this.running--;
      if (this.running === 0) for (const f of this.idle) f();
    }
  }

  private async send(a: PolicyAlert): Promise<void> {
    const body = JSON.stringify(a);
    let last = "";
    for (let attempt = 0; attempt <= this.cfg.retries && !this.closed; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** (attempt - 1), 10_000)).unref());
      try {
        const res = await request(this.url, {
          method: "POST",
          body,
          headers: this.headers,
          signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.cfg.timeout_ms)]),
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          this.opts.metrics?.policyAlerts.inc({ outcome: "sent" });
          return;
        }
        last = `answered ${res.statusCode}`;
        if (res.statusCode !== 429 && res.statusCode < 500) break;
      } catch (e) {
        last = (e as Error).name === "TimeoutError" ? `no answer within ${this.cfg.timeout_ms} ms` : (e as Error).message;
      }
    }
    this.opts.metrics?.policyAlerts.inc({ outcome: "failed" });
    this.burst?.warn("policy_alert_failed", { rule: a.rule, reason: last }, "policy alert not delivered");
  }

  /** Resolves when nothing is queued or being sent (tests), or after `ms`. */
  async drained(ms: number): Promise<boolean> {
    if (this.pending === 0) return true;
    return new Promise<boolean>((resolve) => {
      const f = (): void => {
        if (this.queue.length > 0) return;
        clearTimeout(t);
        this.idle.delete(f);
        resolve(true);
      };
      const t = setTimeout(() => {
        this.idle.delete(f);
        resolve(false);
      }, ms);
      this.idle.add(f);
    });
  }

  /** Stops: queued alerts are given up, POSTs in flight aborted. */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.abort.abort();
  }
}
