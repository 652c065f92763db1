/**
 * Builds the object graph from the config: tiers, providers, the GeoService and
 * the Enricher. The one place where wiring happens; transports and CLI verbs get
 * an `App`.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { sqlitePath, type Config } from "./config.js";
import type { Clock, Entry, GeoInfo, GetOptions, Lookup } from "./lookup/lookup.js";
import { systemClock } from "./lookup/lookup.js";
import { MemoryTier } from "./lookup/memory-tier.js";
import { MmdbProvider } from "./lookup/mmdb-provider.js";
import { SqliteTier } from "./lookup/sqlite-tier.js";
import { DynamoDbTier, createDynamoClient } from "./lookup/dynamodb-tier.js";
import { RedisTier, createRedisClient, redactRedisUrl } from "./lookup/redis-tier.js";
import { RedisFleetBudget } from "./lookup/redis-fleet-budget.js";
import type { SharedBudget } from "./lookup/rate-limiter.js";
import { LookupChain } from "./lookup/lookup-chain.js";
import { geoServiceFromConfig, type DefaultGeoService } from "./lookup/geo-service.js";
import { fileLimiterStore } from "./lookup/limiter-store.js";
import { IPAPI_FREE_URL, IPAPI_PRO_URL } from "./lookup/ipapi-provider.js";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { classifyIp } from "./pipeline/classify.js";
import { Enricher } from "./pipeline/enrich.js";
import { NameResolver } from "./resolve/resolver.js";
import { PolicyEngine } from "./policy/engine.js";
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
  readonly geo: DefaultGeoService;
  /** The cache chain (memory → SQLite → Redis → DynamoDB); empty when every tier is off. */
  readonly cache: Lookup;
  /** The memory tier (L0) of `cache`, when on. */
  readonly memory: MemoryTier | undefined;
  /** Policy rules, when `policy.rules` or `policy.rules_file` is set; `reload()` on SIGHUP. */
  readonly policy: PolicyEngine | undefined;
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
  /** DynamoDB client (tests point one at dynalite); built from `dynamodb.*` when absent. */
  dynamoClient?: DynamoDBDocumentClient;
}

/** Counts what the cache was asked and what it answered, for the CLI progress line. */
class CountingLookup implements Lookup {
  readonly name: string;
  asked = 0;
  hits = 0;
  constructor(private readonly inner: Lookup) {
    this.name = inner.name;
  }
  async get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> {
    this.asked += ips.length;
    const res = await this.inner.get(ips, opts);
    this.hits += res.size;
    return res;
  }
  getFreshSync(ips: readonly string[]): Map<string, Entry> | undefined {
    const res = this.inner.getFreshSync?.(ips);
    if (res) {
      this.asked += ips.length;
      this.hits += res.size;
    }
    return res;
  }
  set(entries: readonly Entry[]): Promise<void> | void {
    return this.inner.set(entries);
  }
  close(): Promise<void> | void {
    return this.inner.close();
  }
}

/**
 * The limiter's state file under `data_dir`, one per provider endpoint (the
 * budget belongs to the endpoint: a pro key's budget isn't the free one's).
 */
export function limiterStatePath(config: Readonly<Config>): string {
  const url = config.ipapi.url ?? (config.ipapi.key ? IPAPI_PRO_URL : IPAPI_FREE_URL);
  const tag = createHash("sha256").update(url).digest("hex").slice(0, 12);
  return join(config.data_dir, `ipapi-budget-${tag}.json`);
}

/** Builds the app; opens stores and offline data. */
export async function createApp(config: Readonly<Config>, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? silentLogger();
  const metrics = deps.metrics ?? createMetrics();
  const clock = deps.clock ?? systemClock;
  const closers: Array<[string, { close(): Promise<void> | void }]> = [];
  // Built first: a bad `resolve.servers` entry fails the start before any store is opened.
  const resolver =
    config.resolve.mode === "off"
      ? undefined
      : new NameResolver({
          servers: config.resolve.servers,
          timeoutMs: config.resolve.timeout_ms,
          concurrency: config.resolve.concurrency,
          cacheMax: config.resolve.cache_max,
          clock,
          logger,
        });
  if (resolver) closers.push(["resolver", resolver]);
  // Compiled before any store is opened: a bad rule or rules file fails the start (exit 78).
  let policy: PolicyEngine | undefined;
  if (config.policy.rules.length > 0 || config.policy.rules_file !== undefined) {
    try {
      policy = new PolicyEngine({ config, logger, metrics, clock });
    } catch (e) {
      resolver?.close();
      throw e;
    }
    closers.push(["policy", policy]);
  }

  const tiers: Lookup[] = [];
  const memory = config.cache.memory.enabled
    ? new MemoryTier({ maxEntries: config.cache.memory.max_entries, clock, staleMaxS: config.cache.stale_max_s })
    : undefined;
  if (memory) tiers.push(memory);
  let sqlite: SqliteTier | undefined;
  if (config.cache.sqlite.enabled) {
    sqlite = SqliteTier.open({
      path: sqlitePath(config),
      maxRows: config.cache.sqlite.max_rows,
      writeBatch: config.cache.sqlite.write_batch,
      flushIntervalMs: config.cache.sqlite.flush_interval_ms,
      queueMax: config.cache.sqlite.queue_max,
      staleMaxS: config.cache.stale_max_s,
      clock,
      logger,
      metrics,
    });
    tiers.push(sqlite);
  }
  // Redis before DynamoDB: when both are set, the nearer, cheaper shared tier answers first.
  let redisBudget: SharedBudget | undefined;
  const red = config.cache.redis;
  if (red.url) {
    const client = createRedisClient({
      url: red.url,
      connectTimeoutMs: red.connect_timeout_ms,
      commandTimeoutMs: red.command_timeout_ms,
      ...(red.ca_file ? { caFile: red.ca_file } : {}),
    });
    const redis = new RedisTier({
      client,
      ownsClient: true,
      keyPrefix: red.key_prefix,
      staleMaxS: config.cache.stale_max_s,
      commandTimeoutMs: red.command_timeout_ms,
      flushIntervalMs: red.flush_interval_ms,
      writeBatch: red.write_batch,
      queueMax: red.queue_max,
      logger,
      metrics,
      clock,
    });
    // A warm shared tier from the first batch when the server is up; never a failed start when it is down.
    if (!(await redis.waitReady(red.connect_timeout_ms))) {
      logger.warn({ url: redactRedisUrl(red.url) }, "redis not reachable at start; the tier is skipped until it connects");
    }
    tiers.push(redis);
    if (red.fleet_budget) {
      redisBudget = new RedisFleetBudget({
        client,
        keyPrefix: red.key_prefix,
        requestsPerWindow: config.ipapi.requests_per_window,
        windowS: config.ipapi.window_s,
        callTimeoutMs: red.command_timeout_ms,
        clock,
        logger,
        metrics,
      });
    }
  }
  let dynamoClient: DynamoDBDocumentClient | undefined;
  const dyn = config.dynamodb;
  if (dyn.table) {
    const client =
      deps.dynamoClient ??
      createDynamoClient({
        ...(dyn.endpoint ? { endpoint: dyn.endpoint } : {}),
        ...(dyn.region ? { region: dyn.region } : {}),
        connectTimeoutMs: dyn.connect_timeout_ms,
        requestTimeoutMs: dyn.request_timeout_ms,
      });
    const dynamo = new DynamoDbTier({
      client,
      table: dyn.table,
      staleMaxS: config.cache.stale_max_s,
      logger,
      metrics,
      clock,
      callTimeoutMs: dyn.request_timeout_ms,
      flushIntervalMs: dyn.flush_interval_ms,
      queueMax: dyn.queue_max,
      ownsClient: deps.dynamoClient === undefined,
    });
    tiers.push(dynamo);
    dynamoClient = client;
  }
  const cache = new CountingLookup(new LookupChain(tiers, { logger, metrics, clock }));
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
  const geo: DefaultGeoService = geoServiceFromConfig(
    config,
    Object.assign(
      { cache, clock, logger, metrics, limiterStore: fileLimiterStore(limiterStatePath(config), logger) },
      mmdb ? { fallback: mmdb } : {},
      dynamoClient ? { dynamoClient } : {},
      redisBudget && !(dynamoClient && config.dynamodb.fleet_budget) ? { shared: redisBudget } : {},
    ),
  );
  // Shutdown order: background lookups → write-behind flush and stores (the chain closes its tiers in order).
  closers.push(["geo", geo]);
  closers.push(["cache", cache]);
  if (mmdb) closers.push(["mmdb", mmdb]);

  const enricher = new Enricher(Object.assign({ geo, config, metrics, logger }, resolver ? { resolver } : {}, policy ? { policy } : {}));
  let closed: Promise<void> | undefined;

  const app: App = {
    config,
    logger,
    metrics,
    enricher,
    geo,
    cache,
    memory,
    policy,
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
    stats: () => {
      const g = geo.stats();
      return Object.assign({ lookups: cache.asked, cacheHits: cache.hits }, config.ipapi.enabled ? { providerBudget: g.limiterRemaining } : {});
    },
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
