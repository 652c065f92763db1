/**
 * Lookup tiers built the same way by several tests: a SqliteTier and a DynamoDbTier on
 * dynalite with test defaults, and
 * a chain of memory and SQLite that already hold two answers in front of a remote tier
 * (DynamoDB, Redis) that a test breaks, with the check that such a chain still answers
 * from memory and SQLite within the lookup deadline.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { loadConfig } from "../../src/config.js";
import { DynamoDbTier } from "../../src/lookup/dynamodb-tier.js";
import type { Clock, Lookup } from "../../src/lookup/lookup.js";
import { LookupChain } from "../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../src/lookup/memory-tier.js";
import { SqliteTier, type SqliteTierOptions } from "../../src/lookup/sqlite-tier.js";
import { silentLogger } from "../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import { ManualClock, positive } from "../unit/lookup/contract.js";
import type { Dynalite } from "./dynalite.js";

/**
 * A SqliteTier on the file `path`: 100 000 rows, batches of 500, a 60 s flush timer (so
 * tests flush by hand), a queue of 10 000, stale answers for an hour, a silent logger;
 * `over` changes any of these.
 */
export function testSqlite(path: string, clock: Clock, over: Partial<SqliteTierOptions> = {}): SqliteTier {
  return SqliteTier.open({ path, maxRows: 100_000, writeBatch: 500, flushIntervalMs: 60_000, queueMax: 10_000, staleMaxS: 3600, clock, logger: silentLogger(), ...over });
}

/**
 * A DynamoDbTier on dynalite's `table` with a new client: calls time out after 5 s, a 60 s
 * flush timer (tests flush by hand), a queue of 10 000, a silent logger.
 */
export function dynaliteTier(dyn: Dynalite, table: string, clock: Clock, staleMaxS = 3600): DynamoDbTier {
  return new DynamoDbTier({ client: dyn.client(), table, staleMaxS, clock, logger: silentLogger(), callTimeoutMs: 5000, flushIntervalMs: 60_000, queueMax: 10_000 });
}

/** `lookup.deadline_ms` of the default config. */
export const DEADLINE_MS = loadConfig().lookup.deadline_ms;
/** How far past the deadline a batch may end. */
export const MARGIN_MS = 50;

/** A chain built by `chainBehindLocal`, with the remote tier it made. */
export interface LocalFrontChain<T extends Lookup> {
  chain: LookupChain;
  metrics: Metrics;
  remote: T;
  /** Closes the chain (errors ignored) and removes the SQLite dir. */
  close(): Promise<void>;
}

/**
 * A chain of memory (holding 1.1.1.1), SQLite in a new temp dir (holding 8.8.8.8, 1 000
 * rows, batches and queue of 100 and 1 000) and the tier `remote` makes with the chain's
 * clock and metrics.
 */
export async function chainBehindLocal<T extends Lookup>(tmpPrefix: string, remote: (clock: ManualClock, metrics: Metrics) => T | Promise<T>): Promise<LocalFrontChain<T>> {
  const clock = new ManualClock(Date.now());
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const metrics = createMetrics();
  const memory = new MemoryTier({ maxEntries: 1000, clock });
  const sqlite = testSqlite(join(dir, "cache.sqlite"), clock, { maxRows: 1000, writeBatch: 100, queueMax: 1000 });
  memory.set([positive("1.1.1.1", clock)]);
  sqlite.set([positive("8.8.8.8", clock)]);
  sqlite.flushAll();
  const tier = await remote(clock, metrics);
  const chain = new LookupChain([memory, sqlite, tier], { logger: silentLogger(), metrics, clock });
  return {
    chain,
    metrics,
    remote: tier,
    close: async () => {
      await chain.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Asks a `chainBehindLocal` chain for 1.1.1.1, 8.8.8.8 and 9.9.9.9 with the caller's
 * deadline (as the GeoService sets it): the answers memory and SQLite had must come back,
 * within `DEADLINE_MS + MARGIN_MS`.
 */
export async function expectLocalAnswersInTime(chain: LookupChain): Promise<void> {
  const started = performance.now();
  const got = await chain.get(["1.1.1.1", "8.8.8.8", "9.9.9.9"], { signal: AbortSignal.timeout(DEADLINE_MS) });
  const elapsed = performance.now() - started;
  expect([...got.keys()].sort()).toEqual(["1.1.1.1", "8.8.8.8"]);
  expect(elapsed).toBeLessThan(DEADLINE_MS + MARGIN_MS);
}
