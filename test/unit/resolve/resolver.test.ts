/**
 * NameResolver against the fake UDP DNS server on 127.0.0.1: TTL cache with an
 * injected clock, negative caching, the concurrency cap, in-flight dedupe,
 * timeouts and names refused without a query.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NameResolver, normalizeName, type NameResolverOptions } from "../../../src/resolve/resolver.js";
import { startFakeDns, type FakeDns } from "../../helpers/fake-dns.js";

class ManualClock {
  t = 1_790_000_000_000;
  now(): number {
    return this.t;
  }
}

let fake: FakeDns;
let clock: ManualClock;
const resolvers: NameResolver[] = [];

function make(opts: Partial<NameResolverOptions> = {}): NameResolver {
  const r = new NameResolver(Object.assign({ servers: [fake.server], timeoutMs: 2000, concurrency: 16, cacheMax: 100, clock }, opts));
  resolvers.push(r);
  return r;
}

beforeEach(async () => {
  clock = new ManualClock();
  fake = await startFakeDns({
    records: {
      "cdn.example": { a: ["8.8.8.8", "8.8.4.4"], aaaa: ["2606:4700:4700::1111"], ttl: 300, aaaaTtl: 30 },
      "v4only.example": { a: ["1.1.1.1"], ttl: 120 },
      "zero.example": { a: ["1.1.1.1"], ttl: 0 },
    },
  });
});

afterEach(async () => {
  for (const r of resolvers.splice(0)) r.close();
  await fake.close();
});

describe("normalizeName", () => {
  it("lower-cases and drops one trailing dot", () => {
    // Prepare
    const names = ["WWW.Example.COM.", "a-b_c.example", "example"];
    // Act
    const out = names.map(normalizeName);
    // Assess
    expect(out).toEqual(["www.example.com", "a-b_c.example", "example"]);
  });

  it("refuses IP literals, empty, overlong names and labels, and odd characters", () => {
    // Prepare
    const bad = ["", ".", "8.8.8.8", "8.8.8.8.", "127.1", "010.0.0.1", "2001:db8::1", "::ffff:1.2.3.4", "a..example", `${"a".repeat(64)}.example`, `${"abcdefghi.".repeat(25)}abcd`, "bad name.example", "ex\u00e4mple.example", "*.example", 42];
    // Act
    const out = bad.map((n) => normalizeName(n));
    // Assess
    expect(out).toEqual(bad.map(() => undefined));
    expect(normalizeName(`${"abcdefghi.".repeat(25)}abc`)).toHaveLength(253);
  });
});

describe("NameResolver", () => {
  it("answers A and AAAA and caches them for the smallest TTL, then asks again", async () => {
    // Prepare
    const r = make();
    // Act
    const first = await r.resolve("CDN.example.");
    const queriesAfterFirst = fake.queriesFor("cdn.example");
    clock.t += 29_999;
    const cached = await r.resolve("cdn.example");
    const queriesWhileCached = fake.queriesFor("cdn.example");
    clock.t += 1;
    const again = await r.resolve("cdn.example");
    // Assess
    expect(first).toEqual(["8.8.8.8", "8.8.4.4", "2606:4700:4700::1111"]);
    expect(cached).toEqual(first);
    expect(again).toEqual(first);
    expect(queriesAfterFirst).toBe(2);
    expect(queriesWhileCached).toBe(2);
    expect(fake.queriesFor("cdn.example")).toBe(4);
    expect(r.stats.cacheHits).toBe(1);
  });

  it("caches a single-family answer for its TTL (NODATA on the other family is not a failure)", async () => {
    // Prepare
    const r = make();
    // Act
    const ips = await r.resolve("v4only.example");
    clock.t += 119_000;
    await r.resolve("v4only.example");
    const during = fake.queriesFor("v4only.example");
    clock.t += 1_000;
    await r.resolve("v4only.example");
    // Assess
    expect(ips).toEqual(["1.1.1.1"]);
    expect(during).toBe(2);
    expect(fake.queriesFor("v4only.example")).toBe(4);
    expect(r.stats.failures).toBe(0);
  });

  it("does not cache a TTL of 0", async () => {
    // Prepare
    const r = make();
    // Act
    await r.resolve("zero.example");
    await r.resolve("zero.example");
    // Assess
    expect(fake.queriesFor("zero.example")).toBe(4);
  });

  it("caches NXDOMAIN for 60 s", async () => {
    // Prepare
    const r = make();
    // Act
    const ips = await r.resolve("nowhere.example");
    clock.t += 59_999;
    await r.resolve("nowhere.example");
    const during = fake.queriesFor("nowhere.example");
    clock.t += 1;
    await r.resolve("nowhere.example");
    // Assess
    expect(ips).toEqual([]);
    expect(during).toBe(2);
    expect(fake.queriesFor("nowhere.example")).toBe(4);
  });

  it("never has more queries in flight than the concurrency cap", async () => {
    // Prepare
    const names = Array.from({ length: 10 }, (_, i) => `n${i}.example`);
    for (const n of names) fake.set(n, { a: ["1.1.1.1"], aaaa: ["2606:4700:4700::1111"] });
    fake.setDelay(20);
    const r = make({ concurrency: 3 });
    // Act
    const out = await r.resolveMany(names, 10_000);
    // Assess
    expect(out.size).toBe(10);
    for (const n of names) expect(out.get(n)).toEqual(["1.1.1.1", "2606:4700:4700::1111"]);
    expect(fake.counts.queries).toBe(20);
    expect(fake.counts.maxInFlight).toBe(3);
  });

  it("asks once for a name that is already being resolved", async () => {
    // Prepare
    fake.setDelay(30);
    const r = make();
    // Act
    const all = await Promise.all([
      r.resolve("cdn.example"),
      r.resolve("CDN.EXAMPLE."),
      r.resolveMany(["cdn.example", "cdn.example."], 5000),
      r.resolve("cdn.example"),
    ]);
    // Assess
    expect(fake.queriesFor("cdn.example")).toBe(2);
    expect(r.stats.joined).toBe(4);
    expect(all[0]).toEqual(["8.8.8.8", "8.8.4.4", "2606:4700:4700::1111"]);
    expect(all[1]).toEqual(all[0]);
    expect(all[3]).toEqual(all[0]);
    expect([...(all[2]).values()]).toEqual([all[0], all[0]]);
  });

  it("gives no IPs for a server that never answers, within the timeout plus a margin", async () => {
    // Prepare
    fake.setMode("hang");
    const r = make({ timeoutMs: 200 });
    // Act
    const t0 = performance.now();
    const ips = await r.resolve("cdn.example");
    const elapsed = performance.now() - t0;
    // Assess
    expect(ips).toEqual([]);
    expect(elapsed).toBeLessThan(200 + 150);
    expect(fake.counts.queries).toBe(2);
  });

  it("resolveMany returns by its deadline with what was answered; the rest fills the cache later", async () => {
    // Prepare
    fake.set("slow.example", { a: ["1.1.1.1"] });
    const r = make({ timeoutMs: 2000 });
    await r.resolve("v4only.example");
    fake.setDelay(300);
    // Act
    const t0 = performance.now();
    const out = await r.resolveMany(["v4only.example", "slow.example"], 50);
    const elapsed = performance.now() - t0;
    const later = await r.resolve("slow.example", 2000);
    const queries = fake.queriesFor("slow.example");
    // Assess
    expect(elapsed).toBeLessThan(50 + 150);
    expect([...out.entries()]).toEqual([["v4only.example", ["1.1.1.1"]]]);
    expect(later).toEqual(["1.1.1.1"]);
    expect(queries).toBe(2);
  });

  it("refuses IP literals and malformed names without a query", async () => {
    // Prepare
    const r = make();
    const bad = ["8.8.8.8", "2606:4700:4700::1111", "", `${"a".repeat(64)}.example`, `${"abcdefghi.".repeat(26)}`, "bad name.example"];
    // Act
    const single = await Promise.all(bad.map((n) => r.resolve(n)));
    const many = await r.resolveMany(bad, 1000);
    // Assess
    expect(single).toEqual(bad.map(() => []));
    expect(many.size).toBe(0);
    expect(r.stats.refused).toBe(bad.length * 2);
    expect(fake.counts.queries).toBe(0);
  });

  it("after close, answers nothing and sends nothing", async () => {
    // Prepare
    const r = make();
    r.close();
    // Act
    const ips = await r.resolve("cdn.example");
    r.close();
    // Assess
    expect(ips).toEqual([]);
    expect(fake.counts.queries).toBe(0);
  });

  it("rejects a server entry node:dns cannot use at construction", () => {
    // Prepare
    const servers = ["not a server"];
    // Act
    const build = (): NameResolver => make({ servers });
    // Assess
    expect(build).toThrow(/resolve\.servers/);
  });
});
