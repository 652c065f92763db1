/**
 * Cache tier scenarios: batches of 100 lookups through a `LookupChain`, all
 * answered by one tier — memory; SQLite with a memory tier too small for the
 * working set (100 entries against 2000 IPs in rotation, so it never holds the
 * next batch: "memory empty", write-through included); DynamoDB (dynalite,
 * started here on 127.0.0.1 port 0) the same way with no SQLite tier. Rates are lookups per second; the
 * runner turns them into ratios against the no-lookup pipeline.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { DynamoDbTier, createDynamoClient, createTable } from "../src/lookup/dynamodb-tier.js";
import type { Entry, Lookup } from "../src/lookup/lookup.js";
import { LookupChain } from "../src/lookup/lookup-chain.js";
import { MemoryTier } from "../src/lookup/memory-tier.js";
import { SqliteTier } from "../src/lookup/sqlite-tier.js";
import { compareRates } from "./measure.js";
import { publicIp } from "./data.js";

const DISTINCT = 2000;
const BATCH = 100;

function entries(now: number): Entry[] {
  const out: Entry[] = [];
  for (let i = 0; i < DISTINCT; i++) {
    const ip = publicIp(i);
    out.push({
      ip,
      src: "ip-api",
      fetchedAt: now,
      expiresAt: now + 86400,
      geo: {
        ip,
        countryCode: "DE",
        country: "Germany",
        regionName: "Hesse",
        city: "Frankfurt am Main",
        lat: 50.11,
        lon: 8.68,
        asn: 64500 + (i % 10),
        asOrg: "Example Net",
        isp: "Example ISP",
        org: "Example Org",
        source: "ip-api",
        fetchedAt: now,
      },
    });
  }
  return out;
}

function batchesOf(ips: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < ips.length; i += BATCH) out.push(ips.slice(i, i + BATCH));
  return out;
}

async function startDynalite(): Promise<{ endpoint: string; close(): Promise<void> }> {
  const dynalite = createRequire(import.meta.url)("dynalite") as (o: Record<string, number>) => Server;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Lookups per second for each scenario (batches of 100 IPs, every IP a hit in the named tier). */
export async function benchCacheTiers(): Promise<Array<{ scenario: string; recordsPerS: number }>> {
  const logger = pino({ level: "silent" });
  const now = Math.floor(Date.now() / 1000);
  const data = entries(now);
  const batches = batchesOf(data.map((e) => e.ip));
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-bench-"));
  const dyn = await startDynalite();
  const client = createDynamoClient({
    endpoint: dyn.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    connectTimeoutMs: 1000,
    requestTimeoutMs: 5000,
  });
  const chains: Lookup[] = [];
  try {
    // memory: everything in L0.
    const memA = new MemoryTier({ maxEntries: 100_000 });
    const sqlA = SqliteTier.open({ path: join(dir, "a.sqlite"), maxRows: 100_000, writeBatch: 500, flushIntervalMs: 200, queueMax: 50_000, staleMaxS: 0, logger });
    memA.set(data);
    const chainMemory = new LookupChain([memA, sqlA], { logger });

    // SQLite: L0 holds one batch, so every IP is an L1 hit copied up again.
    // (Not MemoryTier.clear() per batch: clearing an LRU sized for 100k costs more than the lookups.)
    const memB = new MemoryTier({ maxEntries: BATCH });
    const sqlB = SqliteTier.open({ path: join(dir, "b.sqlite"), maxRows: 100_000, writeBatch: 5000, flushIntervalMs: 200, queueMax: 50_000, staleMaxS: 0, logger });
    sqlB.set(data);
    sqlB.flushAll();
    const chainSqlite = new LookupChain([memB, sqlB], { logger });

    // DynamoDB: L0 holds one batch, no L1.
    const table = "dnsgeo-bench";
    await createTable(client, table);
    const dynC = new DynamoDbTier({ client, table, staleMaxS: 0, logger, callTimeoutMs: 5000, flushIntervalMs: 200, queueMax: 50_000 });
    dynC.set(data);
    await dynC.flush();
    const memC = new MemoryTier({ maxEntries: BATCH });
    const chainDynamo = new LookupChain([memC, dynC], { logger });
    chains.push(chainMemory, chainSqlite, chainDynamo);

    let a = 0;
    let b = 0;
    let c = 0;
    const check = (m: Map<string, Entry>): number => {
      if (m.size !== BATCH) throw new Error(`bench: expected ${BATCH} hits, got ${m.size}`);
      return BATCH;
    };
    const fast = await compareRates([
      { name: "memory", fn: async () => check(await chainMemory.get(batches[a++ % batches.length] as string[])) },
      { name: "sqlite", fn: async () => check(await chainSqlite.get(batches[b++ % batches.length] as string[])) },
    ]);
    const slow = await compareRates(
      [
        { name: "dynamodb", fn: async () => check(await chainDynamo.get(batches[c++ % batches.length] as string[])) },
      ],
      { rounds: 3, msPerRound: 500 },
    );
    const rate = (name: string): number => [...fast, ...slow].find((r) => r.name === name)?.perS ?? 0;
    return [
      { scenario: "lookup: all hits in memory (batches of 100)", recordsPerS: rate("memory") },
      { scenario: "lookup: all hits in SQLite, memory empty (batches of 100)", recordsPerS: rate("sqlite") },
      { scenario: "lookup: all hits in DynamoDB via dynalite (batches of 100)", recordsPerS: rate("dynamodb") },
    ];
  } finally {
    for (const ch of chains) await ch.close();
    client.destroy();
    await dyn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
