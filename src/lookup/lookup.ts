/**
 * The one lookup contract. Every cache tier (memory, SQLite, DynamoDB), every
 * provider (ip-api, mmdb) and the chain that composes them implement `Lookup`.
 */

/** The one normalized geo answer for an IP (docs/architecture.md, "The lookup contract"). */
export interface GeoInfo {
  /** Canonical IP text. */
  ip: string;
  /** ISO 3166-1 alpha-2. */
  countryCode?: string;
  country?: string;
  /** ip-api `region` (may be FIPS-like). */
  regionCode?: string;
  regionName?: string;
  city?: string;
  postalCode?: string;
  lat?: number;
  lon?: number;
  timezone?: string;
  continentCode?: string;
  /** From ip-api `as` "AS15169 Google LLC" → 15169. */
  asn?: number;
  /** The `as` text after the number ("Google LLC"). */
  asOrg?: string;
  org?: string;
  isp?: string;
  /** Where the answer came from: "ip-api" | "mmdb" | another provider name. */
  source: string;
  /** Epoch seconds. */
  fetchedAt: number;
}

/**
 * What a tier holds for one IP: a positive answer (`geo` set) or a negative one
 * (`neg: true`, the provider said "fail" for a public IP).
 */
export interface Entry {
  /** Canonical IP text; the key everywhere (memory, SQLite, DynamoDB). */
  ip: string;
  /** Present for positive entries. */
  geo?: GeoInfo;
  /** True for a negative entry (provider "fail" answer). */
  neg?: boolean;
  /** Source name of the answer ("ip-api", "mmdb", …). */
  src: string;
  /** Epoch seconds when the answer was fetched from its source. */
  fetchedAt: number;
  /** Epoch seconds after which the entry is no longer fresh. */
  expiresAt: number;
  /** Set by a tier when it serves an entry past `expiresAt` (within the stale window). */
  stale?: boolean;
}

/** Options for one `get`. */
export interface GetOptions {
  /** Aborted when the caller's deadline passes; a tier must stop waiting then. */
  signal?: AbortSignal;
  /**
   * Serve entries past `expiresAt` (marked `stale: true`) as long as they are
   * younger than `expiresAt + staleMaxS`. Tiers that can't store stale rows ignore it.
   */
  allowStale?: boolean;
}

/**
 * One tier of the write-through cache, a provider, or the chain of them.
 * `get` answers only for the IPs it knows (a miss is simply absent from the map).
 */
export interface Lookup {
  /** Closed vocabulary, used as a metric label: "memory" | "sqlite" | "redis" | "dynamodb" | "ipapi" | "mmdb" | "chain". */
  readonly name: string;
  get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> | Map<string, Entry>;
  set(entries: readonly Entry[]): Promise<void> | void;
  /** Idempotent. */
  close(): Promise<void> | void;
  /**
   * Every IP fresh, answered synchronously, or undefined as soon as one is not
   * (then nothing was counted: ask `get`). The warm-cache path, without timers
   * or promises; only tiers that can answer synchronously offer it.
   */
  getFreshSync?(ips: readonly string[]): Map<string, Entry> | undefined;
}

/** Injectable clock (milliseconds since epoch), so TTL tests need no sleeps. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Epoch seconds from a clock. */
export function nowS(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}

/** What the pipeline gets back for one IP from a `GeoService`. */
export interface IpResult {
  /** The best entry known (positive or negative); absent when nothing is known yet. */
  entry?: Entry;
  /**
   * True when no better answer is coming: a fresh cache or provider answer,
   * or the only source configured answered. False when the provider is still
   * being asked in the background (the entry, if any, is an offline or stale one).
   */
  final: boolean;
}

/** Options for one `GeoService.lookup`. */
export interface ServiceLookupOptions {
  /** Overrides `lookup.deadline_ms` for this call. */
  deadlineMs?: number;
  /** Wait for final answers however long it takes (CLI `enrich --wait`). */
  wait?: boolean;
}

/**
 * What the pipeline asks: the best answer for each (public, canonical) IP
 * within the deadline. Never rejects because a tier is down: unknown IPs come
 * back without an entry and `final: false`.
 */
export interface GeoService {
  lookup(ips: readonly string[], opts?: ServiceLookupOptions): Promise<Map<string, IpResult>>;
  /** Idempotent; drains background work up to its own timeout. */
  close(): Promise<void>;
}
