/**
 * The write-through chain: asks each tier in order for what is still missing,
 * copies a lower tier's hit into the tiers above, and is itself a `Lookup`
 * (name "chain"), so a provider is just its last tier. A tier that throws,
 * rejects or runs past its timeout (or the caller's signal) is skipped for that
 * batch — counted, logged once per burst — and never fails the batch.
 */
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { BurstLog } from "./burst-log.js";
import { type Clock, type Entry, type GetOptions, type Lookup, systemClock } from "./lookup.js";

export interface LookupChainOptions {
  logger: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** Longest wait for one tier's answer, milliseconds; unset: only the caller's signal bounds it. */
  tierTimeoutMs?: number;
}

/** Why a tier was skipped. */
type Skip = "error" | "timeout";

/** A tier's answer, or why there is none. */
type Asked = Map<string, Entry> | Skip;

interface Counters {
  hit: { inc(n?: number): void };
  miss: { inc(n?: number): void };
  stale: { inc(n?: number): void };
  error: { inc(n?: number): void };
  timeout: { inc(n?: number): void };
  tierErrors: { inc(n?: number): void };
}

const NOOP = { inc: (): void => undefined };
const NOOP_COUNTERS: Counters = { hit: NOOP, miss: NOOP, stale: NOOP, error: NOOP, timeout: NOOP, tierErrors: NOOP };

/** Thrown by `close()` when some tiers failed to close; names them. */
export class ChainCloseError extends Error {
  constructor(readonly failures: ReadonlyArray<{ tier: string; error: unknown }>) {
    super(`closing the lookup chain: ${failures.map((f) => `${f.tier} failed (${messageOf(f.error)})`).join("; ")}`);
    this.name = "ChainCloseError";
  }
}

/** Composes tiers (fastest first) into one `Lookup`. */
export class LookupChain implements Lookup {
  readonly name = "chain";
  private readonly counters: Counters[];
  private readonly burst: BurstLog;
  /** IP → the batch that is looking it up now; concurrent `get`s share it. Keyed separately for allowStale. */
  private readonly inflight = new Map<string, Promise<Map<string, Entry>>>();
  private readonly inflightStale = new Map<string, Promise<Map<string, Entry>>>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly tiers: readonly Lookup[],
    private readonly opts: LookupChainOptions,
  ) {
    this.burst = new BurstLog(opts.logger, 10_000, opts.clock ?? systemClock);
    const m = opts.metrics;
    this.counters = tiers.map((t) =>
      m
        ? {
            hit: m.lookups.labels({ tier: t.name, outcome: "hit" }),
            miss: m.lookups.labels({ tier: t.name, outcome: "miss" }),
            stale: m.lookups.labels({ tier: t.name, outcome: "stale" }),
            error: m.lookups.labels({ tier: t.name, outcome: "error" }),
            timeout: m.lookups.labels({ tier: t.name, outcome: "timeout" }),
            tierErrors: m.tierErrors.labels({ tier: t.name }),
          }
        : NOOP_COUNTERS,
    );
  }

  /**
   * The first tier's answer when that tier answers synchronously (memory) and has
   * every IP fresh; otherwise undefined, with nothing counted.
   */
  getFreshSync(ips: readonly string[]): Map<string, Entry> | undefined {
    const first = this.tiers[0];
    if (first?.getFreshSync === undefined || ips.length === 0 || this.closing) return undefined;
    let m: Map<string, Entry> | undefined;
    try {
      m = first.getFreshSync(ips);
    } catch {
      return undefined;
    }
    if (m !== undefined) (this.counters[0] as Counters).hit.inc(m.size);
    return m;
  }

  /**
   * The best entry for each IP: fresh answers from any tier first; stale ones
   * (only with `allowStale`) for what no tier had fresh. Resolves by the
   * caller's signal at the latest, with what was known by then.
   *
   * The first tier (memory, in practice) is asked directly for the whole
   * batch: when it answers everything — the common case — its map is the
   * result, with no per-IP bookkeeping. Only what it misses goes through
   * in-flight sharing and the lower tiers. A get that joins another's
   * in-flight lookup gets that lookup's answers, which its first caller's
   * signal bounded; it waits no longer than its own signal either way.
   */
  async get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> {
    if (ips.length === 0 || this.tiers.length === 0) return new Map();
    const allowStale = opts?.allowStale === true;
    const tierOpts: GetOptions = { signal: opts?.signal, allowStale };
    const first = this.tiers[0] as Lookup;
    const c0 = this.counters[0] as Counters;
    // In-batch dedupe: every tier sees each IP once.
    let unique = ips;
    if (ips.length > 1) {
      const set = new Set(ips);
      if (set.size !== ips.length) unique = Array.from(set);
    }
    const asked = this.ask(first, unique, tierOpts);
    const r0 = asked instanceof Map || typeof asked === "string" ? asked : await asked;
    let out: Map<string, Entry>;
    let missing: Set<string> | undefined;
    let stale: Map<string, Entry> | undefined;
    if (typeof r0 === "string") {
      c0[r0].inc(unique.length);
      c0.tierErrors.inc();
      out = new Map();
      missing = new Set(unique);
    } else {
      out = r0;
      for (let k = 0; k < unique.length; k++) {
        const ip = unique[k] as string;
        const e = r0.get(ip);
        if (e !== undefined && e.stale !== true) continue;
        (missing ??= new Set()).add(ip);
        if (e !== undefined) {
          r0.delete(ip);
          (stale ??= new Map()).set(ip, e);
        }
      }
      if (r0.size > 0) c0.hit.inc(r0.size);
      if (missing) c0.miss.inc(missing.size);
    }
    if (!missing || this.tiers.length === 1) {
      if (missing && stale) for (const [ip, e] of stale) out.set(ip, e);
      return out;
    }

    const inflight = allowStale ? this.inflightStale : this.inflight;
    const mine: string[] = [];
    let joined: Map<Promise<Map<string, Entry>>, string[]> | undefined;
    for (const ip of missing) {
      const p = inflight.get(ip);
      if (p === undefined) {
        mine.push(ip);
        continue;
      }
      joined ??= new Map();
      const list = joined.get(p);
      if (list) list.push(ip);
      else joined.set(p, [ip]);
    }
    const take = (res: Map<string, Entry>, list: Iterable<string>): void => {
      for (const ip of list) {
        const e = res.get(ip);
        if (e !== undefined) out.set(ip, e);
      }
    };

    if (mine.length > 0) {
      const own = this.lookup(mine, tierOpts);
      for (const ip of mine) inflight.set(ip, own);
      try {
        take(await own, mine);
      } finally {
        for (const ip of mine) if (inflight.get(ip) === own) inflight.delete(ip);
      }
    }
    if (joined) {
      // Another batch started these earlier; wait for it, but never past our own signal.
      const all = Promise.all(Array.from(joined, ([p, list]) => p.then((res) => take(res, list))));
      await raceSignal(all, opts?.signal);
    }
    if (stale) {
      // A fresher-expiring stale entry from the first tier wins over a lower tier's stale one.
      for (const [ip, e] of stale) {
        const got = out.get(ip);
        if (got === undefined || (got.stale === true && got.expiresAt < e.expiresAt)) out.set(ip, e);
      }
    }
    return out;
  }

  /** One pass over the tiers below the first for IPs nobody else is looking up. */
  private async lookup(ips: string[], tierOpts: GetOptions): Promise<Map<string, Entry>> {
    const found = new Map<string, Entry>();
    const allowStale = tierOpts.allowStale === true;
    let stale: Map<string, Entry> | undefined;
    let missing = ips;
    for (let i = 1; i < this.tiers.length && missing.length > 0; i++) {
      const tier = this.tiers[i] as Lookup;
      const c = this.counters[i] as Counters;
      const res = await this.ask(tier, missing, tierOpts);
      if (typeof res === "string") {
        c[res].inc(missing.length);
        c.tierErrors.inc();
        continue;
      }
      if (res.size === 0) {
        c.miss.inc(missing.length);
        continue;
      }
      const next: string[] = [];
      let hits: Entry[] | undefined;
      for (const ip of missing) {
        const e = res.get(ip);
        if (e !== undefined && e.stale !== true) {
          found.set(ip, e);
          (hits ??= []).push(e);
          continue;
        }
        if (e !== undefined && allowStale) {
          stale ??= new Map();
          const prev = stale.get(ip);
          if (!prev || prev.expiresAt < e.expiresAt) stale.set(ip, e);
        }
        next.push(ip);
      }
      if (hits) {
        c.hit.inc(hits.length);
        if (i > 0) this.writeUp(i, hits);
      }
      if (next.length > 0) c.miss.inc(next.length);
      missing = next;
    }
    if (stale && missing.length > 0) {
      for (const ip of missing) {
        const e = stale.get(ip);
        if (e) found.set(ip, e);
      }
    }
    return found;
  }

  /** Asks one tier, bounded by the tier timeout and the caller's signal; never throws. */
  private ask(tier: Lookup, ips: readonly string[], opts: GetOptions): Asked | Promise<Asked> {
    let r: Map<string, Entry> | Promise<Map<string, Entry>>;
    try {
      r = tier.get(ips, opts);
    } catch (e) {
      this.report(tier, "error", e);
      return "error";
    }
    if (r instanceof Map) return r;
    const signal = opts.signal;
    const timeoutMs = this.opts.tierTimeoutMs;
    if (signal === undefined && timeoutMs === undefined) {
      return r.then(
        (m) => m,
        (e) => {
          this.report(tier, "error", e);
          return "error" as const;
        },
      );
    }
    return new Promise<Asked>((resolve) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (v: Asked, e?: unknown): void => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (typeof v === "string") this.report(tier, v, e);
        resolve(v);
      };
      const onAbort = (): void => finish("timeout", signal?.reason);
      if (signal?.aborted) {
        // The tier was asked anyway so a synchronous tier could still answer; a pending one can't.
        void r.catch(() => undefined);
        finish("timeout", signal.reason);
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(() => finish("timeout", new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      r.then(
        (m) => finish(m),
        (e) => finish(isAbort(e) ? "timeout" : "error", e),
      );
    });
  }

  /** Copies hits of tier `i` into the tiers above it; fire-and-forget, failures counted. */
  private writeUp(i: number, hits: Entry[]): void {
    for (let j = 0; j < i; j++) void this.setOne(j, hits);
  }

  private setOne(j: number, entries: readonly Entry[]): Promise<void> {
    const tier = this.tiers[j] as Lookup;
    const fail = (e: unknown): void => {
      (this.counters[j] as Counters).tierErrors.inc();
      this.report(tier, "error", e, "write");
    };
    try {
      const r = tier.set(entries);
      if (r && typeof (r).then === "function") return (r).then(undefined, fail);
    } catch (e) {
      fail(e);
    }
    return Promise.resolve();
  }

  /** Writes to every tier; a failing tier is counted and logged, never rejected. */
  async set(entries: readonly Entry[]): Promise<void> {
    if (entries.length === 0) return;
    await Promise.all(this.tiers.map((_, j) => this.setOne(j, entries)));
  }

  /** Closes the tiers in order (fastest first); idempotent; rejects naming the tiers that failed. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const failures: Array<{ tier: string; error: unknown }> = [];
      for (const t of this.tiers) {
        try {
          await t.close();
        } catch (error) {
          failures.push({ tier: t.name, error });
        }
      }
      if (failures.length > 0) throw new ChainCloseError(failures);
    })();
    return this.closing;
  }

  private report(tier: Lookup, kind: Skip, e: unknown, op = "get"): void {
    this.burst.warn(
      `${tier.name}:${op}:${kind}`,
      { tier: tier.name, op, outcome: kind, err: messageOf(e) },
      kind === "timeout" ? "lookup tier did not answer in time; skipped for this batch" : `lookup tier failed; skipped for this ${op === "get" ? "batch" : "write"}`,
    );
  }
}

/** Resolves when `p` settles or the signal aborts, whichever is first; never rejects. */
function raceSignal(p: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  const settled = p.then(
    () => undefined,
    () => undefined,
  );
  if (!signal) return settled;
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const onAbort = (): void => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    void settled.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

function isAbort(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  return name === "AbortError" || name === "TimeoutError";
}

function messageOf(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
