/**
 * The optional domain → IP step (`resolve.*`; README, "Inputs";
 * answers found as names): asks DNS for the A and AAAA records of a query name, with
 * its own servers, a per-query timeout, a cap on queries at once, a name → IPs
 * cache that honours the DNS TTLs, and one query per name in flight.
 *
 * Decisions:
 * - A positive answer is cached for the smallest TTL among its A and AAAA
 *   records (capped at `maxTtlS`); a TTL of 0 is not cached.
 * - NXDOMAIN and NODATA on both families are cached for `negativeTtlS`
 *   (60 s): RFC 2308 would take the SOA minimum, which node:dns does not
 *   expose, and 60 s keeps a flood of one bad name from re-asking per record.
 * - Failures (timeout, SERVFAIL, refused, network) are cached for
 *   `failureTtlS` (5 s) so a dead server is not asked again for every record,
 *   yet recovers quickly.
 * - Only plain host names are asked: lower-cased, one trailing dot removed,
 *   labels of `a-z 0-9 - _`, at most 63 bytes per label and 253 in all. IP
 *   literals, empty names and anything else are refused without a query.
 * - Nothing here throws or rejects: every failure is "no IPs".
 */
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { LRUCache } from "lru-cache";
import { systemClock, type Clock } from "../lookup/lookup.js";
import type { Logger } from "../observability/logger.js";
import { classifyIp } from "../pipeline/classify.js";
import type { NameLookup } from "../pipeline/types.js";

export type { NameLookup };
import { ConfigError } from "../config.js";

/** Resolves names to IPs within a deadline; what the Enricher needs. */
/** Options of {@link NameResolver}. */
export interface NameResolverOptions {
  /** DNS servers, `ip` or `ip:port` (`[v6]:port`); empty or absent: the system's. */
  servers?: readonly string[];
  /** Timeout of one query, milliseconds (one try, no retry). */
  timeoutMs: number;
  /** DNS queries in flight at once (an A and an AAAA query count as two). */
  concurrency: number;
  /** Names kept in the cache. */
  cacheMax: number;
  /** How long NXDOMAIN / NODATA is cached, seconds. Default 60. */
  negativeTtlS?: number;
  /** How long a failed resolution (timeout, SERVFAIL…) is cached, seconds. Default 5. */
  failureTtlS?: number;
  /** Longest a positive answer is cached whatever its TTL, seconds. Default 86 400. */
  maxTtlS?: number;
  /** Queries waiting for a slot; past it a name fails at once (not cached). Default 1024. */
  queueMax?: number;
  /** Clock for TTLs (milliseconds). */
  clock?: Clock;
  logger?: Logger;
}

/** Counters, for tests and stats. */
export interface NameResolverStats {
  /** DNS queries sent (A and AAAA count separately). */
  queries: number;
  /** Names answered from the cache. */
  cacheHits: number;
  /** Names that joined a resolution already in flight. */
  joined: number;
  /** Names refused without a query (IP literal, empty, too long…). */
  refused: number;
  /** Queries that failed (timeout, SERVFAIL, refused, network). */
  failures: number;
  /** Queries not sent because the wait queue was full. */
  dropped: number;
}

interface CacheItem {
  ips: readonly string[];
  /** Epoch ms. */
  expiresAt: number;
}

type FamilyOutcome =
  | { kind: "ok"; ips: string[]; ttl: number }
  | { kind: "negative" }
  | { kind: "failed" }
  | { kind: "dropped" };

const EMPTY: readonly string[] = Object.freeze([]);
const LABEL = /^[a-z0-9_-]{1,63}$/;

/**
 * The name as it is asked and cached (lower case, no trailing dot), or
 * undefined when it must not be asked: empty, an IP literal (or anything that
 * looks like one), longer than 253, a label empty or longer than 63, or
 * characters outside `a-z 0-9 - _`.
 */
export function normalizeName(name: unknown): string | undefined {
  if (typeof name !== "string" || name === "" || name.length > 254) return undefined;
  let n = name.toLowerCase();
  if (n.endsWith(".")) n = n.slice(0, -1);
  if (n === "" || n.length > 253) return undefined;
  if (isIP(n) !== 0 || classifyIp(n) !== undefined) return undefined;
  for (const label of n.split(".")) if (!LABEL.test(label)) return undefined;
  return n;
}

function errCode(e: unknown): string | undefined {
  const c = e && typeof e === "object" ? (e as { code?: unknown }).code : undefined;
  return typeof c === "string" ? c : undefined;
}

/** node:dns `Resolver` behind a TTL cache, a concurrency cap and in-flight dedupe. */
export class NameResolver implements NameLookup {
  private readonly dns: Resolver;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly negativeTtlMs: number;
  private readonly failureTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly queueMax: number;
  private readonly cache: LRUCache<string, CacheItem>;
  private readonly inflight = new Map<string, Promise<readonly string[]>>();
  private readonly waiters: Array<(ok: boolean) => void> = [];
  private active = 0;
  private closed = false;
  private loggedFailure = false;
  readonly stats: NameResolverStats = { queries: 0, cacheHits: 0, joined: 0, refused: 0, failures: 0, dropped: 0 };

  /** Throws only for a server entry node:dns does not accept (a config error at start). */
  constructor(opts: NameResolverOptions) {
    this.timeoutMs = opts.timeoutMs;
    this.concurrency = Math.max(1, opts.concurrency);
    this.negativeTtlMs = (opts.negativeTtlS ?? 60) * 1000;
    this.failureTtlMs = (opts.failureTtlS ?? 5) * 1000;
    this.maxTtlMs = (opts.maxTtlS ?? 86_400) * 1000;
    this.queueMax = opts.queueMax ?? 1024;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger;
    this.cache = new LRUCache<string, CacheItem>({ max: Math.max(1, opts.cacheMax) });
    this.dns = new Resolver({ timeout: opts.timeoutMs, tries: 1 });
    if (opts.servers && opts.servers.length > 0) {
      try {
        this.dns.setServers([...opts.servers]);
      } catch (e) {
        throw new ConfigError(`resolve.servers: ${(e as Error).message} (expected "ip" or "ip:port")`);
      }
    }
  }

  /**
   * The IPs of one name (A then AAAA answers, canonical text), from the cache
   * or DNS; empty when refused, unknown, failed, or not answered within
   * `deadlineMs` (default: the query timeout). Never rejects.
   */
  async resolve(name: string, deadlineMs: number = this.timeoutMs): Promise<readonly string[]> {
    const n = normalizeName(name);
    if (n === undefined) {
      this.stats.refused++;
      return EMPTY;
    }
    const hit = this.cached(n);
    if (hit !== undefined) return hit;
    const p = this.start(n);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<readonly string[]>((res) => {
      timer = setTimeout(res, Math.max(0, deadlineMs), EMPTY);
    });
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async resolveMany(names: Iterable<string>, deadlineMs: number): Promise<Map<string, readonly string[]>> {
    const out = new Map<string, readonly string[]>();
    const pending: Array<Promise<void>> = [];
    const seen = new Set<string>();
    for (const name of names) {
      if (seen.has(name)) continue;
      seen.add(name);
      const n = normalizeName(name);
      if (n === undefined) {
        this.stats.refused++;
        continue;
      }
      const hit = this.cached(n);
      if (hit !== undefined) out.set(name, hit);
      else pending.push(this.start(n).then((ips) => void out.set(name, ips)));
    }
    if (pending.length === 0) return out;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((res) => {
      timer = setTimeout(res, Math.max(0, deadlineMs));
    });
    await Promise.race([Promise.all(pending), late]);
    clearTimeout(timer);
    // Resolutions that finish after the deadline still fill the cache, but not this answer.
    return new Map(out);
  }

  /** Cancels queries in flight and refuses new ones. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dns.cancel();
    for (const w of this.waiters.splice(0)) w(false);
  }

  private cached(n: string): readonly string[] | undefined {
    const item = this.cache.get(n);
    if (item === undefined) return undefined;
    if (item.expiresAt <= this.clock.now()) {
      this.cache.delete(n);
      return undefined;
    }
    this.stats.cacheHits++;
    return item.ips;
  }

  private start(n: string): Promise<readonly string[]> {
    const running = this.inflight.get(n);
    if (running !== undefined) {
      this.stats.joined++;
      return running;
    }
    const p = this.query(n).finally(() => this.inflight.delete(n));
    this.inflight.set(n, p);
    return p;
  }

  private async query(n: string): Promise<readonly string[]> {
    if (this.closed) return EMPTY;
    const [v4, v6] = await Promise.all([this.family(n, 4), this.family(n, 6)]);
    const ips: string[] = [];
    let ttl = Infinity;
    for (const r of [v4, v6]) {
      if (r.kind !== "ok") continue;
      for (const ip of r.ips) {
        const c = classifyIp(ip);
        const canon = c ? c.ip : ip;
        if (!ips.includes(canon)) ips.push(canon);
      }
      if (r.ttl < ttl) ttl = r.ttl;
    }
    // A family that never got a slot says nothing about the name: not worth caching as "no IPs".
    const dropped = v4.kind === "dropped" || v6.kind === "dropped";
    let ttlMs: number;
    if (ips.length > 0) ttlMs = Math.min(ttl * 1000, this.maxTtlMs);
    else if (v4.kind === "negative" && v6.kind === "negative") ttlMs = this.negativeTtlMs;
    else ttlMs = this.failureTtlMs;
    const frozen: readonly string[] = ips.length > 0 ? Object.freeze(ips) : EMPTY;
    if (ttlMs > 0 && !this.closed && !(dropped && ips.length === 0)) {
      this.cache.set(n, { ips: frozen, expiresAt: this.clock.now() + ttlMs });
    }
    return frozen;
  }

  private async family(n: string, fam: 4 | 6): Promise<FamilyOutcome> {
    if (!(await this.acquire())) {
      this.stats.dropped++;
      return { kind: "dropped" };
    }
    this.stats.queries++;
    try {
      const recs = fam === 4 ? await this.dns.resolve4(n, { ttl: true }) : await this.dns.resolve6(n, { ttl: true });
      let ttl = Infinity;
      const ips: string[] = [];
      for (const r of recs) {
        ips.push(r.address);
        if (r.ttl < ttl) ttl = r.ttl;
      }
      this.loggedFailure = false;
      return ips.length > 0 ? { kind: "ok", ips, ttl } : { kind: "negative" };
    } catch (e) {
      const code = errCode(e);
      if (code === "ENOTFOUND" || code === "ENODATA") return { kind: "negative" };
      this.stats.failures++;
      if (!this.loggedFailure && code !== "ECANCELLED") {
        // Log the first failure of an outage, count the rest: a dead server would flood the log per name.
        this.loggedFailure = true;
        this.logger?.warn({ code }, "resolve: DNS query failed; names without answers are left unresolved");
      }
      return { kind: "failed" };
    } finally {
      this.release();
    }
  }

  private acquire(): Promise<boolean> | boolean {
    if (this.closed) return false;
    if (this.active < this.concurrency) {
      this.active++;
      return true;
    }
    if (this.waiters.length >= this.queueMax) return false;
    return new Promise<boolean>((res) => this.waiters.push(res));
  }

  private release(): void {
    const next = this.waiters.shift();
    // The slot passes straight to the next waiter, so `active` stays the same.
    if (next) next(true);
    else this.active--;
  }
}
