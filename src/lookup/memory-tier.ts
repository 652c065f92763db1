import { LRUCache } from "lru-cache";
import { nowS, systemClock, type Clock, type Entry, type GetOptions, type Lookup } from "./lookup.js";

/** Options for {@link MemoryTier}. */
export interface MemoryTierOptions {
  /** Most entries kept; past it the least recently used one is evicted. */
  maxEntries: number;
  /** Injected clock (milliseconds); defaults to the system clock. */
  clock?: Clock;
  /**
   * How long past `expiresAt` an entry may still be served with `allowStale`, seconds.
   * Defaults to 30 days, the `cache.stale_max_s` default.
   */
  staleMaxS?: number;
}

const DEFAULT_STALE_MAX_S = 30 * 86400;

/**
 * L0: an in-process LRU of entries keyed by canonical IP text.
 *
 * Expiry is decided here from each entry's own `expiresAt`, not by lru-cache's
 * TTL, because entries arrive from other tiers with their lifetimes already set
 * and because the stale window needs the expired entry to still be there.
 * Fresh entries are returned as stored (callers must not mutate them); stale
 * ones are returned as copies marked `stale: true`.
 */
export class MemoryTier implements Lookup {
  readonly name = "memory";
  private readonly cache: LRUCache<string, Entry>;
  private readonly clock: Clock;
  private readonly staleMaxS: number;

  constructor(opts: MemoryTierOptions) {
    this.cache = new LRUCache<string, Entry>({ max: opts.maxEntries });
    this.clock = opts.clock ?? systemClock;
    this.staleMaxS = opts.staleMaxS ?? DEFAULT_STALE_MAX_S;
  }

  /** Entries currently held (fresh or not). */
  get size(): number {
    return this.cache.size;
  }

  get(ips: readonly string[], opts?: GetOptions): Map<string, Entry> {
    const out = new Map<string, Entry>();
    const n = ips.length;
    if (n === 0) return out;
    const now = nowS(this.clock);
    const allowStale = opts?.allowStale === true;
    const cache = this.cache;
    for (let i = 0; i < n; i++) {
      const ip = ips[i]!;
      const e = cache.get(ip);
      if (e === undefined) continue;
      if (e.expiresAt > now) {
        out.set(ip, e);
      } else if (now < e.expiresAt + this.staleMaxS) {
        if (allowStale) {
          const copy = Object.assign({}, e);
          copy.stale = true;
          out.set(ip, copy);
        }
      } else {
        // Past the stale window it can never be served again; free the slot.
        cache.delete(ip);
      }
    }
    return out;
  }

  /**
   * Up to `n` entries, most recently used first, without touching their recency:
   * the answers of the records seen last (the status page's map samples these).
   */
  recent(n: number): Entry[] {
    const out: Entry[] = [];
    if (n <= 0) return out;
    for (const e of this.cache.values()) {
      out.push(e);
      if (out.length >= n) break;
    }
    return out;
  }

  getFreshSync(ips: readonly string[]): Map<string, Entry> | undefined {
    const out = new Map<string, Entry>();
    const now = nowS(this.clock);
    const cache = this.cache;
    for (let i = 0; i < ips.length; i++) {
      const ip = ips[i]!;
      const e = cache.get(ip);
      // The first IP that is missing or expired ends it: the caller then asks `get`.
      if (e === undefined || e.expiresAt <= now) return undefined;
      out.set(ip, e);
    }
    return out;
  }

  set(entries: readonly Entry[]): void {
    const now = nowS(this.clock);
    const cache = this.cache;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (now >= e.expiresAt + this.staleMaxS) continue;
      if (e.stale === true) {
        // A stale copy served by a lower tier: staleness is recomputed on read here.
        const copy = Object.assign({}, e);
        delete copy.stale;
        cache.set(e.ip, copy);
      } else {
        cache.set(e.ip, e);
      }
    }
  }

  /** Drops every entry. */
  clear(): void {
    this.cache.clear();
  }

  close(): void {
    this.cache.clear();
  }
}
