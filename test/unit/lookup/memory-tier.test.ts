import { describe, expect, it } from "vitest";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import type { Clock, Entry } from "../../../src/lookup/lookup.js";
import { runLookupContract } from "./contract.js";

runLookupContract("memory", ({ clock, staleMaxS }) => ({
  lookup: new MemoryTier({ maxEntries: 10_000, clock, staleMaxS }),
}));

class FakeClock implements Clock {
  constructor(public ms: number) {}
  now(): number {
    return this.ms;
  }
  advanceS(s: number): void {
    this.ms += s * 1000;
  }
}

const T0 = 1_700_000_000;

function entry(ip: string, expiresAt: number, extra: Partial<Entry> = {}): Entry {
  return Object.assign(
    { ip, geo: { ip, countryCode: "US", source: "ip-api", fetchedAt: T0 }, src: "ip-api", fetchedAt: T0, expiresAt },
    extra,
  );
}

function tier(opts: { maxEntries?: number; staleMaxS?: number } = {}): { clock: FakeClock; mem: MemoryTier } {
  const clock = new FakeClock(T0 * 1000);
  const mem = new MemoryTier({ maxEntries: opts.maxEntries ?? 100, clock, staleMaxS: opts.staleMaxS ?? 1000 });
  return { clock, mem };
}

describe("MemoryTier", () => {
  it("returns a fresh entry that was set and nothing for unknown IPs", () => {
    const { mem } = tier();
    const e = entry("8.8.8.8", T0 + 60);

    mem.set([e]);
    const got = mem.get(["8.8.8.8", "1.1.1.1"]);

    expect(got.size).toBe(1);
    expect(got.get("8.8.8.8")).toEqual(e);
    expect(got.get("8.8.8.8")?.stale).toBeUndefined();
    expect(mem.name).toBe("memory");
  });

  it("stops serving an entry once expiresAt is reached, unless stale is allowed", () => {
    const { clock, mem } = tier({ staleMaxS: 1000 });
    mem.set([entry("8.8.8.8", T0 + 60)]);

    clock.advanceS(59);
    const justBefore = mem.get(["8.8.8.8"]);
    clock.advanceS(1);
    const atExpiry = mem.get(["8.8.8.8"]);
    const staleAtExpiry = mem.get(["8.8.8.8"], { allowStale: true });

    expect(justBefore.has("8.8.8.8")).toBe(true);
    expect(atExpiry.size).toBe(0);
    expect(staleAtExpiry.get("8.8.8.8")?.stale).toBe(true);
  });

  it("serves stale copies only within expiresAt + staleMaxS and never marks the stored entry", () => {
    const { clock, mem } = tier({ staleMaxS: 1000 });
    const e = entry("2606:4700:4700::1111", T0 + 60);
    mem.set([e]);

    clock.advanceS(60 + 999);
    const inside = mem.get(["2606:4700:4700::1111"], { allowStale: true });
    clock.advanceS(1);
    const outside = mem.get(["2606:4700:4700::1111"], { allowStale: true });

    const served = inside.get("2606:4700:4700::1111");
    expect(served?.stale).toBe(true);
    expect(served).not.toBe(e);
    expect(e.stale).toBeUndefined();
    expect(outside.size).toBe(0);
    expect(mem.size).toBe(0);
  });

  it("stores entries that arrive marked stale without the mark, so freshness is judged here", () => {
    const { mem } = tier();

    mem.set([entry("1.1.1.1", T0 + 60, { stale: true })]);

    expect(mem.get(["1.1.1.1"]).get("1.1.1.1")?.stale).toBeUndefined();
  });

  it("does not keep entries already past their stale window", () => {
    const { mem } = tier({ staleMaxS: 10 });

    mem.set([entry("1.1.1.1", T0 - 10)]);

    expect(mem.size).toBe(0);
  });

  it("keeps negative entries like positive ones", () => {
    const { mem } = tier();

    mem.set([{ ip: "9.9.9.9", neg: true, src: "ip-api", fetchedAt: T0, expiresAt: T0 + 5 }]);

    expect(mem.get(["9.9.9.9"]).get("9.9.9.9")?.neg).toBe(true);
  });

  it("evicts the least recently used entry past maxEntries", () => {
    const { mem } = tier({ maxEntries: 3 });
    mem.set([entry("1.0.0.1", T0 + 60), entry("1.0.0.2", T0 + 60), entry("1.0.0.3", T0 + 60)]);
    mem.get(["1.0.0.1"]);

    mem.set([entry("1.0.0.4", T0 + 60)]);
    const got = mem.get(["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"]);

    expect(mem.size).toBe(3);
    expect([...got.keys()].sort()).toEqual(["1.0.0.1", "1.0.0.3", "1.0.0.4"]);
  });

  it("answers a batch of 0 and a batch of 1000 keys", () => {
    const { mem } = tier({ maxEntries: 2000 });
    const ips = Array.from({ length: 1000 }, (_, i) => `2001:db8::${i.toString(16)}`);
    mem.set(ips.filter((_, i) => i % 2 === 0).map((ip) => entry(ip, T0 + 60)));

    const none = mem.get([]);
    const half = mem.get(ips);

    expect(none.size).toBe(0);
    expect(half.size).toBe(500);
    expect(half.has("2001:db8::0")).toBe(true);
    expect(half.has("2001:db8::1")).toBe(false);
  });

  it("clear() and close() drop everything; close() is idempotent", () => {
    const { mem } = tier();
    mem.set([entry("8.8.8.8", T0 + 60), entry("8.8.4.4", T0 + 60)]);

    mem.clear();
    const afterClear = mem.size;
    mem.set([entry("8.8.8.8", T0 + 60)]);
    mem.close();
    mem.close();

    expect(afterClear).toBe(0);
    expect(mem.size).toBe(0);
    expect(mem.get(["8.8.8.8"]).size).toBe(0);
  });
});
