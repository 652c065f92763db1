/**
 * Builds the object graph from the config: tiers, providers, the GeoService and
 * the Enricher. The one place where wiring happens; transports and CLI verbs get
 * an `App`.
 */
import type { Config } from "./config.js";
import type { Clock, GeoInfo, GeoService, IpResult, Lookup } from "./lookup/lookup.js";
import { systemClock } from "./lookup/lookup.js";
import { MemoryTier } from "./lookup/memory-tier.js";
import { MmdbProvider } from "./lookup/mmdb-provider.js";
import { classifyIp } from "./pipeline/classify.js";
import { Enricher } from "./pipeline/enrich.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { silentLogger, type Logger } from "./observability/logger.js";

/** What `lookupIps` says about one queried IP. */
export interface IpLookupAnswer {
  /** The text asked for. */
  query: string;
  /** Canonical IP (absent when the query is not an IP). */
  ip?: string;
  /** enriched: final answer; partial: offline/stale answer, provider pending; pending: nothing yet; skipped: never looked up; invalid: not an IP. */
  status: "enriched" | "partial" | "pending" | "skipped" | "not_found" | "invalid";
  reason?: string;
  stale?: boolean;
  geo?: GeoInfo;
}

export interface AppStats {
  /** IPs looked up so far. */
  lookups: number;
  /** Of those, answered by a cache tier. */
  cacheHits: number;
  /** Provider requests left in the current window, when a provider is on. */
  providerBudget?: number;
}

export interface App {
  readonly config: Readonly<Config>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly enricher: Enricher;
  readonly geo: GeoService;
  /** The cache chain (memory → SQLite → DynamoDB), when any tier is on. */
  readonly cache: Lookup | undefined;
  /** Looks arbitrary query strings up (HTTP /v1/lookup, gRPC Lookup, CLI lookup). */
  lookupIps(queries: readonly string[], opts?: { deadlineMs?: number; wait?: boolean }): Promise<IpLookupAnswer[]>;
  /** True once the stores are open (not tied to DynamoDB or ip-api). */
  ready(): boolean;
  stats(): AppStats;
  /** Idempotent: background lookups → write-behind flush → stores. */
  close(): Promise<void>;
}

export interface AppDeps {
  logger?: Logger;
  metrics?: Metrics;
  clock?: Clock;
}

/** Answers from the cache, then the offline provider; every answer is final. */
class OfflineGeoService implements GeoService {
  constructor(
    private readonly cache: Lookup | undefined,
    private readonly fallback: Lookup | undefined,
  ) {}

  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const out = new Map<string, IpResult>();
    let missing: readonly string[] = ips;
    if (this.cache) {
      const hits = await this.cache.get(ips);
      for (const [ip, entry] of hits) out.set(ip, { entry, final: true });
      missing = ips.filter((ip) => !hits.has(ip));
    }
    if (this.fallback && missing.length > 0) {
      const found = await this.fallback.get(missing);
      if (this.cache && found.size > 0) await this.cache.set([...found.values()]);
      for (const [ip, entry] of found) out.set(ip, { entry, final: true });
    }
    for (const ip of ips) if (!out.has(ip)) out.set(ip, { final: true });
    return out;
  }

  async close(): Promise<void> {}
}

/** Builds the app; opens stores and offline data. */
export async function createApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? silentLogger();
  const metrics = deps.metrics ?? createMetrics();
  const clock = deps.clock ?? systemClock;
  const closers: Array<[string, { close(): Promise<void> | void }]> = [];

  const memory = config.cache.memory.enabled
    ? new MemoryTier({ maxEntries: config.cache.memory.max_entries, clock, staleMaxS: config.cache.stale_max_s })
    : undefined;
  const mmdb = config.mmdb.enabled
    ? await MmdbProvider.open({
        ...(config.mmdb.city_v4_path ? { cityV4Path: config.mmdb.city_v4_path } : {}),
        ...(config.mmdb.city_v6_path ? { cityV6Path: config.mmdb.city_v6_path } : {}),
        ...(config.mmdb.asn_v4_path ? { asnV4Path: config.mmdb.asn_v4_path } : {}),
        ...(config.mmdb.asn_v6_path ? { asnV6Path: config.mmdb.asn_v6_path } : {}),
        ttlS: config.cache.ttl_s,
        clock,
      })
    : undefined;
  const geo: GeoService = new OfflineGeoService(memory, mmdb);
  closers.push(["geo", geo]);
  if (memory) closers.push(["memory", memory]);
  if (mmdb) closers.push(["mmdb", mmdb]);

  const enricher = new Enricher({ geo, config, metrics, logger });
  let lookups = 0;
  let closed: Promise<void> | undefined;

  const app: App = {
    config,
    logger,
    metrics,
    enricher,
    geo,
    cache: memory,
    async lookupIps(queries, opts = {}) {
      const answers: IpLookupAnswer[] = [];
      const wanted: string[] = [];
      for (const q of queries) {
        const c = classifyIp(q.trim());
        if (!c) answers.push({ query: q, status: "invalid", reason: "not_ip" });
        else if (c.class === "skipped") answers.push({ query: q, ip: c.ip, status: "skipped", ...(c.reason ? { reason: c.reason } : {}) });
        else {
          answers.push({ query: q, ip: c.ip, status: "pending" });
          wanted.push(c.ip);
        }
      }
      if (wanted.length === 0) return answers;
      lookups += wanted.length;
      const lookupOpts: { deadlineMs?: number; wait?: boolean } = {};
      if (opts.deadlineMs !== undefined) lookupOpts.deadlineMs = opts.deadlineMs;
      if (opts.wait) lookupOpts.wait = true;
      const results = await geo.lookup([...new Set(wanted)], lookupOpts);
      for (const a of answers) {
        if (a.status !== "pending" || !a.ip) continue;
        const r = results.get(a.ip);
        const e = r?.entry;
        if (e?.geo) {
          a.status = r?.final ? "enriched" : "partial";
          a.geo = e.geo;
          if (e.stale) a.stale = true;
        } else if (r?.final) {
          a.status = "not_found";
          a.reason = e?.neg ? "provider_fail" : "unknown_ip";
        }
      }
      return answers;
    },
    ready: () => closed === undefined,
    stats: () => ({ lookups, cacheHits: 0 }),
    close() {
      closed ??= (async () => {
        for (const [name, c] of closers) {
          try {
            await c.close();
          } catch (e) {
            logger.error({ err: e, component: name }, "close failed");
          }
        }
      })();
      return closed;
    },
  };
  return app;
}
