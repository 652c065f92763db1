import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../../src/observability/metrics.js";
import type { Entry, GetOptions, Lookup } from "../../../src/lookup/lookup.js";
import { ChainCloseError, LookupChain } from "../../../src/lookup/lookup-chain.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { ManualClock, positive, runLookupContract } from "./contract.js";
import { captureLog } from "../../helpers/log-capture.js";
import { testSqlite } from "../../helpers/lookup-tiers.js";

/** An in-memory fake tier that records what it was asked and can be told to misbehave. */
class FakeTier implements Lookup {
  readonly asked: string[][] = [];
  readonly setCalls: Entry[][] = [];
  readonly data = new Map<string, Entry>();
  mode: "ok" | "throw" | "reject" | "hang" | "async" = "ok";
  gate: Promise<void> | undefined;
  failSet = false;
  closed = 0;
  closeError: Error | undefined;
  constructor(
    readonly name: string,
    private readonly order?: string[],
  ) {}
  get(ips: readonly string[], opts?: GetOptions): Map<string, Entry> | Promise<Map<string, Entry>> {
    this.asked.push([...ips]);
    const answer = (): Map<string, Entry> => {
      const out = new Map<string, Entry>();
      for (const ip of ips) {
        const e = this.data.get(ip);
        if (e && (!e.stale || opts?.allowStale)) out.set(ip, e);
      }
      return out;
    };
    switch (this.mode) {
      case "throw":
        throw new Error(`${this.name} is broken`);
      case "reject":
        return Promise.reject(new Error(`${this.name} is down`));
      case "hang":
        return new Promise(() => undefined);
      case "async":
        return (this.gate ?? Promise.resolve()).then(answer);
      default:
        return answer();
    }
  }
  set(entries: readonly Entry[]): void {
    if (this.failSet) throw new Error(`${this.name} is broken`);
    this.setCalls.push([...entries]);
    for (const e of entries) this.data.set(e.ip, e);
  }
  close(): void {
    this.closed++;
    this.order?.push(this.name);
    if (this.closeError) throw this.closeError;
  }
}

async function count(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}

describe("LookupChain", () => {
  const clock = new ManualClock();

  it("asks each tier only for what is still missing, once per unique IP", async () => {
    // Prepare
    const a = new FakeTier("memory");
    const b = new FakeTier("sqlite");
    const c = new FakeTier("dynamodb");
    a.data.set("1.1.1.1", positive("1.1.1.1", clock));
    b.data.set("8.8.8.8", positive("8.8.8.8", clock));
    const chain = new LookupChain([a, b, c], { logger: silentLogger() });
    // Act
    const got = await chain.get(["1.1.1.1", "8.8.8.8", "9.9.9.9", "8.8.8.8", "1.1.1.1"]);
    // Assess
    expect([...got.keys()].sort()).toEqual(["1.1.1.1", "8.8.8.8"]);
    expect(a.asked).toEqual([["1.1.1.1", "8.8.8.8", "9.9.9.9"]]);
    expect(b.asked).toEqual([["8.8.8.8", "9.9.9.9"]]);
    expect(c.asked).toEqual([["9.9.9.9"]]);
  });

  it("copies a lower tier's hit into every tier above it, not below", async () => {
    const a = new FakeTier("memory");
    const b = new FakeTier("sqlite");
    const c = new FakeTier("dynamodb");
    const d = new FakeTier("ipapi");
    const e = positive("8.8.8.8", clock);
    c.data.set(e.ip, e);
    const chain = new LookupChain([a, b, c, d], { logger: silentLogger() });
    await chain.get(["8.8.8.8"]);
    expect(a.setCalls).toEqual([[e]]);
    expect(b.setCalls).toEqual([[e]]);
    expect(c.setCalls).toEqual([]);
    expect(d.asked).toEqual([]);
    // The next batch is answered by the top tier.
    await chain.get(["8.8.8.8"]);
    expect(b.asked).toHaveLength(1);
  });

  it("set() writes to every tier and survives a failing one", async () => {
    const a = new FakeTier("memory");
    const b = new FakeTier("sqlite");
    b.failSet = true;
    const c = new FakeTier("dynamodb");
    const metrics = createMetrics();
    const chain = new LookupChain([a, b, c], { logger: silentLogger(), metrics });
    const e = positive("8.8.8.8", clock);
    await chain.set([e]);
    expect(a.data.get("8.8.8.8")).toBe(e);
    expect(c.data.get("8.8.8.8")).toBe(e);
    expect(await count(metrics, "dnsgeo_tier_errors_total", { tier: "sqlite" })).toBe(1);
  });

  it("shares one in-flight lookup among concurrent gets for the same IP", async () => {
    const a = new FakeTier("memory");
    const b = new FakeTier("dynamodb");
    b.mode = "async";
    let open!: () => void;
    b.gate = new Promise((r) => (open = r));
    b.data.set("8.8.8.8", positive("8.8.8.8", clock));
    const chain = new LookupChain([a, b], { logger: silentLogger() });
    const first = chain.get(["8.8.8.8", "1.1.1.1"]);
    await Promise.resolve();
    const second = chain.get(["8.8.8.8", "9.9.9.9"]);
    open();
    const [r1, r2] = await Promise.all([first, second]);
    expect(r1.get("8.8.8.8")?.ip).toBe("8.8.8.8");
    expect(r2.get("8.8.8.8")?.ip).toBe("8.8.8.8");
    expect(b.asked).toEqual([["8.8.8.8", "1.1.1.1"], ["9.9.9.9"]]);
  });

  it.each(["throw", "reject", "hang"] as const)("skips a tier that does %s, counts it and still answers", async (mode) => {
    // Prepare
    const a = new FakeTier("memory");
    const b = new FakeTier("dynamodb");
    const c = new FakeTier("ipapi");
    b.mode = mode;
    a.data.set("1.1.1.1", positive("1.1.1.1", clock));
    c.data.set("8.8.8.8", positive("8.8.8.8", clock));
    const metrics = createMetrics();
    const chain = new LookupChain([a, b, c], { logger: silentLogger(), metrics, tierTimeoutMs: 20 });
    // Act
    const got = await chain.get(["1.1.1.1", "8.8.8.8"]);
    // Assess
    expect([...got.keys()].sort()).toEqual(["1.1.1.1", "8.8.8.8"]);
    const outcome = mode === "hang" ? "timeout" : "error";
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "dynamodb", outcome })).toBe(1);
    expect(await count(metrics, "dnsgeo_tier_errors_total", { tier: "dynamodb" })).toBe(1);
  });

  it("stops waiting for a tier when the caller's signal aborts", async () => {
    const a = new FakeTier("memory");
    const b = new FakeTier("dynamodb");
    b.mode = "hang";
    a.data.set("1.1.1.1", positive("1.1.1.1", clock));
    const chain = new LookupChain([a, b], { logger: silentLogger() });
    const ac = new AbortController();
    const p = chain.get(["1.1.1.1", "8.8.8.8"], { signal: ac.signal });
    setTimeout(() => ac.abort(), 5);
    const got = await p;
    expect([...got.keys()]).toEqual(["1.1.1.1"]);
  });

  it("a get joining another's in-flight lookup returns by its own signal", async () => {
    const b = new FakeTier("dynamodb");
    b.mode = "hang";
    const chain = new LookupChain([new FakeTier("memory"), b], { logger: silentLogger() });
    void chain.get(["8.8.8.8"]);
    const ac = new AbortController();
    const p = chain.get(["8.8.8.8"], { signal: ac.signal });
    ac.abort();
    expect((await p).size).toBe(0);
    expect(b.asked).toHaveLength(1);
  });

  it("logs a failing tier once per burst, with the count of the rest", async () => {
    const { logger, records: lines } = captureLog();
    const burstClock = new ManualClock();
    const b = new FakeTier("dynamodb");
    b.mode = "reject";
    const chain = new LookupChain([b], { logger, clock: burstClock });
    for (let i = 0; i < 5; i++) await chain.get(["8.8.8.8"]);
    expect(lines).toHaveLength(1);
    burstClock.advanceS(10);
    await chain.get(["8.8.8.8"]);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ tier: "dynamodb", suppressedSinceLast: 4 });
  });

  it("prefers a fresh entry from any tier over a stale one, and serves stale only when allowed", async () => {
    // Prepare: tier a has x stale, tier b has x fresh; only tier a knows y (stale).
    const a = new FakeTier("memory");
    const b = new FakeTier("sqlite");
    const freshX = positive("8.8.8.8", clock);
    a.data.set("8.8.8.8", Object.assign(positive("8.8.8.8", clock, -10), { stale: true }));
    a.data.set("9.9.9.9", Object.assign(positive("9.9.9.9", clock, -10), { stale: true }));
    b.data.set("8.8.8.8", freshX);
    const chain = new LookupChain([a, b], { logger: silentLogger() });
    // Act
    const strict = await chain.get(["8.8.8.8", "9.9.9.9"]);
    const lenient = await chain.get(["8.8.8.8", "9.9.9.9"], { allowStale: true });
    // Assess
    expect(strict.get("8.8.8.8")).toBe(freshX);
    expect(strict.has("9.9.9.9")).toBe(false);
    expect(lenient.get("8.8.8.8")).toBe(freshX);
    expect(lenient.get("9.9.9.9")?.stale).toBe(true);
  });

  it("counts hits and misses per tier", async () => {
    const a = new FakeTier("memory");
    const b = new FakeTier("sqlite");
    a.data.set("1.1.1.1", positive("1.1.1.1", clock));
    b.data.set("8.8.8.8", positive("8.8.8.8", clock));
    const metrics = createMetrics();
    const chain = new LookupChain([a, b], { logger: silentLogger(), metrics });
    await chain.get(["1.1.1.1", "8.8.8.8", "9.9.9.9"]);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "memory", outcome: "hit" })).toBe(1);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "memory", outcome: "miss" })).toBe(2);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "sqlite", outcome: "hit" })).toBe(1);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "sqlite", outcome: "miss" })).toBe(1);
  });

  it("answers synchronously only when a synchronous first tier has every IP fresh, and counts like get", async () => {
    const memory = new MemoryTier({ maxEntries: 100, clock, staleMaxS: 86_400 });
    const lower = new FakeTier("sqlite");
    const metrics = createMetrics();
    const chain = new LookupChain([memory, lower], { logger: silentLogger(), metrics, clock });
    const a = positive("1.1.1.1", clock);
    const b = positive("8.8.8.8", clock, 10);
    memory.set([a, b]);
    const both = chain.getFreshSync(["1.1.1.1", "8.8.8.8", "1.1.1.1"]);
    expect(both).toBeInstanceOf(Map);
    expect(both?.get("1.1.1.1")).toBe(a);
    expect(both?.get("8.8.8.8")).toBe(b);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "memory", outcome: "hit" })).toBe(2);
    // One IP missing: nothing answered, nothing counted, lower tiers not asked.
    expect(chain.getFreshSync(["1.1.1.1", "9.9.9.9"])).toBeUndefined();
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "memory", outcome: "hit" })).toBe(2);
    expect(await count(metrics, "dnsgeo_lookups_total", { tier: "memory", outcome: "miss" })).toBe(0);
    expect(lower.asked).toEqual([]);
    // Expired (stale) is not fresh.
    clock.advanceS(11);
    expect(chain.getFreshSync(["8.8.8.8"])).toBeUndefined();
    expect(chain.getFreshSync(["1.1.1.1"])?.get("1.1.1.1")).toBe(a);
    // A first tier that may answer asynchronously is never asked this way.
    const fake = new FakeTier("memory");
    fake.data.set("1.1.1.1", a);
    expect(new LookupChain([fake], { logger: silentLogger() }).getFreshSync(["1.1.1.1"])).toBeUndefined();
    expect(fake.asked).toEqual([]);
  });

  it("closes tiers in order, once, and names the ones that failed", async () => {
    const order: string[] = [];
    const a = new FakeTier("memory", order);
    const b = new FakeTier("sqlite", order);
    const c = new FakeTier("dynamodb", order);
    b.closeError = new Error("disk gone");
    const chain = new LookupChain([a, b, c], { logger: silentLogger() });
    const err = await chain.close().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChainCloseError);
    expect((err as Error).message).toContain("sqlite failed (Error: disk gone)");
    expect(order).toEqual(["memory", "sqlite", "dynamodb"]);
    await chain.close().catch(() => undefined);
    expect([a.closed, b.closed, c.closed]).toEqual([1, 1, 1]);
  });
});

runLookupContract("chain (memory → sqlite)", ({ clock, staleMaxS }) => {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-chain-"));
  const sqlite = testSqlite(join(dir, "cache.sqlite"), clock, { staleMaxS });
  const chain = new LookupChain([new MemoryTier({ maxEntries: 10_000, clock, staleMaxS }), sqlite], { logger: silentLogger(), clock });
  return { lookup: chain, flush: () => sqlite.flushAll(), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
});
