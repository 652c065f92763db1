/**
 * Two dnsgeo instances, each with its own memory and SQLite file, sharing one
 * DynamoDB table: what the first got from the provider is a DynamoDB hit for
 * the second, and the provider is asked zero times more. (In-process chains;
 * the variant with real processes lives with the service tests.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../../src/observability/metrics.js";
import { DynamoDbTier } from "../../../src/lookup/dynamodb-tier.js";
import type { Clock, Entry, Lookup } from "../../../src/lookup/lookup.js";
import { LookupChain } from "../../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { SqliteTier } from "../../../src/lookup/sqlite-tier.js";
import { startDynalite, type Dynalite } from "../../helpers/dynalite.js";
import { dynaliteTier, testSqlite } from "../../helpers/lookup-tiers.js";
import { ManualClock, ipv4s, positive, runLookupContract } from "../../unit/lookup/contract.js";

/** A provider stand-in: knows every IP, counts the IPs it was asked for. */
class CountingProvider implements Lookup {
  readonly name = "ipapi";
  asked = 0;
  constructor(private readonly clock: Clock) {}
  async get(ips: readonly string[]): Promise<Map<string, Entry>> {
    this.asked += ips.length;
    return new Map(ips.map((ip) => [ip, positive(ip, this.clock)]));
  }
  set(): void {}
  close(): void {}
}

let dyn: Dynalite;
beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn.close();
});

interface Instance {
  chain: LookupChain;
  sqlite: SqliteTier;
  dynamo: DynamoDbTier;
  metrics: Metrics;
}

function instance(table: string, dir: string, clock: Clock, provider?: Lookup): Instance {
  const metrics = createMetrics();
  const sqlite = testSqlite(join(dir, "dnsgeo.sqlite"), clock, { maxRows: 10_000 });
  const dynamo = dynaliteTier(dyn, table, clock);
  const tiers: Lookup[] = [new MemoryTier({ maxEntries: 10_000, clock }), sqlite, dynamo];
  if (provider) tiers.push(provider);
  return { chain: new LookupChain(tiers, { logger: silentLogger(), metrics, clock }), sqlite, dynamo, metrics };
}

async function hits(metrics: Metrics, tier: string): Promise<number> {
  const m = await metrics.registry.getSingleMetric("dnsgeo_lookups_total")?.get();
  return m?.values.find((v) => v.labels.tier === tier && v.labels.outcome === "hit")?.value ?? 0;
}

describe("two instances sharing one DynamoDB table", () => {
  it("the second gets from DynamoDB what the first fetched, and the provider is not asked again", async () => {
    // Prepare
    const table = await dyn.newTable();
    const clock = new ManualClock(Date.now());
    const provider = new CountingProvider(clock);
    const dirA = mkdtempSync(join(tmpdir(), "dnsgeo-a-"));
    const dirB = mkdtempSync(join(tmpdir(), "dnsgeo-b-"));
    const a = instance(table, dirA, clock, provider);
    const b = instance(table, dirB, clock, provider);
    const ips = ipv4s(150).concat(["2606:4700:4700::1111"]);
    // Act
    const first = await a.chain.get(ips);
    await a.chain.close(); // flushes A's write-behind queues
    const askedAfterA = provider.asked;
    const second = await b.chain.get(ips);
    // Assess
    expect(first.size).toBe(ips.length);
    expect(askedAfterA).toBe(ips.length);
    expect(second.size).toBe(ips.length);
    expect(provider.asked).toBe(askedAfterA);
    expect(await hits(b.metrics, "dynamodb")).toBe(ips.length);
    expect(second.get("2606:4700:4700::1111")).toEqual(first.get("2606:4700:4700::1111"));
    // B's own tiers were filled on the way up: its next batch never reaches DynamoDB.
    b.sqlite.flushAll();
    expect(b.sqlite.get(ips).size).toBe(ips.length);
    await b.chain.get(ips);
    expect(await hits(b.metrics, "memory")).toBe(ips.length);
    await b.chain.close();
    rmSync(dirA, { recursive: true, force: true });
    rmSync(dirB, { recursive: true, force: true });
  });
});

runLookupContract("chain (memory → sqlite → dynamodb)", async ({ clock, staleMaxS }) => {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-chain3-"));
  const table = await dyn.newTable();
  const sqlite = testSqlite(join(dir, "dnsgeo.sqlite"), clock, { writeBatch: 1000, staleMaxS });
  const dynamo = dynaliteTier(dyn, table, clock, staleMaxS);
  const chain = new LookupChain([new MemoryTier({ maxEntries: 10_000, clock, staleMaxS }), sqlite, dynamo], { logger: silentLogger(), clock });
  return {
    lookup: chain,
    flush: async () => {
      sqlite.flushAll();
      await dynamo.flush();
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
});
