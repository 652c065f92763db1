/**
 * A shared tier on Redis or Valkey (`cache.redis.url`): the fleet's cache
 * outside AWS. One key per IP (`<key_prefix><ip>`) holding the stored item as
 * JSON, the same item the SQLite and DynamoDB tiers keep; `SET … EX` lets
 * the server drop it once it can no longer be served, even stale. A batch is
 * read with one MGET (one round trip); writes go through a bounded
 * write-behind queue, flushed as pipelined SETs.
 *
 * Every call is bounded by `command_timeout_ms` and the caller's signal, and
 * commands are never queued while disconnected, so a down, hanging or slow
 * server costs a batch at most that timeout (the chain skips the tier and
 * counts it) and never the lookup deadline.
 */
import { readFileSync } from "node:fs";
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { BurstLog } from "./burst-log.js";
import { fromItem, serveable, toItem } from "./entry-codec.js";
import { type Clock, type Entry, type GetOptions, type Lookup, nowS, systemClock } from "./lookup.js";
import { PendingWrites } from "./write-behind.js";

/** Keys per MGET; larger batches are split but still sent in one pipeline (one round trip). */
const GET_CHUNK = 500;

export interface RedisClientOptions {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. */
  url: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** PEM CA bundle that signs the server's certificate (`rediss://` with a private CA); default: the system's CAs. */
  caFile?: string;
}

/**
 * A client that fails fast while disconnected (no offline queue), reconnects
 * in the background with capped backoff, and times out every command.
 * AUTH (user and password) and the database number come from the URL;
 * `rediss://` turns TLS on, verifying the server against the system's CAs or `caFile`.
 */
export function createRedisClient(opts: RedisClientOptions): Redis {
  const options: RedisOptions = {
    connectTimeout: opts.connectTimeoutMs,
    commandTimeout: opts.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  };
  if (opts.url.startsWith("rediss://")) {
    // Given explicitly so the CA is used; the URL alone would only turn TLS on.
    options.tls = opts.caFile ? { ca: readFileSync(opts.caFile) } : {};
  }
  return new Redis(opts.url, options);
}

/** The URL without its password, for logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "redacted";
    return u.toString();
  } catch {
    return "(unparsable url)";
  }
}

export interface RedisTierOptions {
  /** Injected client (tests); not closed by `close()` unless `ownsClient`. */
  client: Redis;
  /** Prepended to each IP to form its key. */
  keyPrefix: string;
  /** Expired items may be served (stale) this long past expiry, seconds. */
  staleMaxS: number;
  /** Longest one call may take, milliseconds (also cut by the caller's signal). */
  commandTimeoutMs: number;
  /** Write-behind flush interval, milliseconds. */
  flushIntervalMs: number;
  /** SETs per pipeline during a flush. */
  writeBatch: number;
  /** Pending writes kept; past it the oldest are dropped and counted. */
  queueMax: number;
  logger: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** Close the client on close. */
  ownsClient?: boolean;
}

/** The Redis/Valkey tier. */
export class RedisTier implements Lookup {
  readonly name = "redis";
  private readonly pending: PendingWrites;
  private readonly clock: Clock;
  private readonly burst: BurstLog;
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: RedisTierOptions) {
    this.pending = new PendingWrites("redis_write", opts.queueMax, opts.metrics);
    this.clock = opts.clock ?? systemClock;
    this.burst = new BurstLog(opts.logger);
    // Without a listener ioredis prints every connection error; the tier reports through its own warnings.
    opts.client.on("error", (e: unknown) => {
      this.burst.warn("connection", { err: messageOf(e) }, "redis connection error; the tier is skipped until it reconnects");
    });
    if (opts.client.status === "wait") opts.client.connect().catch(() => undefined);
    this.timer = setInterval(() => void this.flush(), opts.flushIntervalMs);
    this.timer.unref();
  }

  /**
   * Resolves true once connected, false after `timeoutMs`; never rejects.
   * Lets the app start with a warm shared tier without ever blocking on a down server.
   */
  async waitReady(timeoutMs: number): Promise<boolean> {
    const c = this.opts.client;
    if (c.status === "ready") return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(t);
        c.off("ready", onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const t = setTimeout(() => done(false), timeoutMs);
      t.unref();
      c.on("ready", onReady);
    });
  }

  /** Reads the whole batch in one round trip; rejects when the signal aborts or the call fails. */
  async get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    if (ips.length === 0) return out;
    const unique = Array.from(new Set(ips));
    const now = nowS(this.clock);
    // Writes not flushed yet are answered too (read-your-writes).
    const ask: string[] = [];
    for (const ip of unique) {
      const p = this.pending.get(ip);
      const served = p && serveable(p, now, opts?.allowStale, this.opts.staleMaxS);
      if (served) out.set(ip, served);
      else ask.push(ip);
    }
    if (ask.length === 0) return out;
    const pipe = this.opts.client.pipeline();
    for (let i = 0; i < ask.length; i += GET_CHUNK) pipe.mget(ask.slice(i, i + GET_CHUNK).map((ip) => this.opts.keyPrefix + ip));
    const results = await this.bounded(pipe.exec(), opts?.signal);
    for (const [err, values] of results ?? []) {
      if (err) throw err;
      for (const raw of values as Array<string | null>) {
        if (raw === null) continue;
        const e = parse(raw);
        if (!e || out.has(e.ip)) continue;
        const served = serveable(e, now, opts?.allowStale, this.opts.staleMaxS);
        if (served) out.set(e.ip, served);
      }
    }
    return out;
  }

  /** Queues the entries; they reach Redis with the next flush. */
  set(entries: readonly Entry[]): void {
    if (this.closing) return;
    this.pending.add(entries);
  }

  /** Writes everything queued so far (one flush at a time); never rejects. */
  flush(): Promise<void> {
    return this.pending.flush((batch) => this.writeAll(batch));
  }

  private async writeAll(batch: Entry[]): Promise<void> {
    const now = nowS(this.clock);
    let dropped = 0;
    for (let i = 0; i < batch.length; i += this.opts.writeBatch) {
      const chunk = batch.slice(i, i + this.opts.writeBatch);
      // Once a pipeline failed (server down, timeout) the rest would only wait out the same
      // timeout one by one, which would also stretch close() without bound.
      if (dropped > 0) {
        dropped += chunk.length;
        continue;
      }
      const pipe = this.opts.client.pipeline();
      let n = 0;
      for (const e of chunk) {
        // Kept until it can no longer be served, even stale; the TTL counts from the entry's own clock.
        const ttl = e.expiresAt + this.opts.staleMaxS - now;
        if (ttl <= 0) continue;
        pipe.set(this.opts.keyPrefix + e.ip, JSON.stringify(toItem(e)), "EX", ttl);
        n++;
      }
      if (n === 0) continue;
      try {
        const res = await this.bounded(pipe.exec(), undefined);
        const failed = (res ?? []).find(([err]) => err);
        if (failed) throw failed[0] as Error;
      } catch (e) {
        dropped += chunk.length;
        this.burst.warn("write", { err: messageOf(e), dropped }, "redis write failed; queued items dropped");
      }
    }
    if (dropped > 0) this.pending.countDropped(dropped);
  }

  /** The call's promise, rejected when the command timeout or the caller's signal comes first. */
  private bounded<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    // A pipeline sent while disconnected would reject anyway; it is left to settle unobserved.
    p.catch(() => undefined);
    const t = AbortSignal.timeout(this.opts.commandTimeoutMs);
    const s = signal ? AbortSignal.any([signal, t]) : t;
    if (s.aborted) return Promise.reject(abortError(s));
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(abortError(s));
      s.addEventListener("abort", onAbort, { once: true });
      p.then(
        (v) => {
          s.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          s.removeEventListener("abort", onAbort);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Flushes the queue, then stops. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      clearInterval(this.timer);
      this.closing = this.flush().finally(() => {
        if (this.opts.ownsClient) this.opts.client.disconnect();
      });
    }
    return this.closing;
  }
}

function parse(raw: string): Entry | undefined {
  try {
    const item = JSON.parse(raw) as unknown;
    return item && typeof item === "object" ? fromItem(item as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function abortError(s: AbortSignal): Error {
  const r = s.reason as unknown;
  if (r instanceof Error) return r;
  const e = new Error("redis call aborted");
  e.name = "AbortError";
  return e;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
