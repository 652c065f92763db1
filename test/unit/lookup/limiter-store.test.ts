/**
 * The ip-api budget outlives the process: a limiter started after another one
 * spent the window (a restart, a CLI run after a CLI run) must not send again
 * until that window has passed, and a pause or ban carries over too.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileLimiterStore, type LimiterState, type LimiterStore } from "../../../src/lookup/limiter-store.js";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";

class ManualClock {
  constructor(public t = 1_790_000_000_000) {}
  now(): number {
    return this.t;
  }
}

function memoryStore(): LimiterStore & { state?: LimiterState } {
  const s: LimiterStore & { state?: LimiterState } = {
    load: () => (s.state ? structuredClone(s.state) : undefined),
    save: (st) => {
      s.state = structuredClone(st);
    },
  };
  return s;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("limiter state across processes", () => {
  it("a new limiter sees the sends of the previous one and waits for the window", () => {
    // Prepare: the first process spends the whole window
    const clock = new ManualClock();
    const store = memoryStore();
    const first = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store });
    for (let i = 0; i < 15; i++) {
      expect(first.tryAcquire()).toBe(true);
      first.update({ status: 200, rl: 14 - i, ttl: 60 });
    }
    expect(first.tryAcquire()).toBe(false);
    // Act: a restart a few seconds later
    clock.t += 5_000;
    const second = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store });
    // Assess
    expect(second.tryAcquire()).toBe(false);
    clock.t += 60_000;
    expect(second.tryAcquire()).toBe(true);
  });

  it("does not count its own sends twice (open, then answered)", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store: memoryStore() });
    let n = 0;
    for (let i = 0; i < 30; i++) {
      if (!limiter.tryAcquire()) break;
      clock.t += 10;
      limiter.update({ status: 200 });
      n++;
    }
    expect(n).toBe(15);
  });

  it("carries a 429 pause and a 403 ban over a restart", () => {
    const clock = new ManualClock();
    const store = memoryStore();
    const a = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store });
    expect(a.tryAcquire()).toBe(true);
    a.update({ status: 429, rl: 0, ttl: 30 });
    clock.t += 1000;
    expect(new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store }).tryAcquire()).toBe(false);
    clock.t += 40_000;
    const b = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store });
    expect(b.tryAcquire()).toBe(true);
    b.update({ status: 403 });
    clock.t += 10 * 60_000;
    const c = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store });
    expect(c.banned).toBe(true);
    expect(c.tryAcquire()).toBe(false);
  });

  it("a restart after a ban's cool-down lets one probe through, not the whole budget, until a send succeeds", () => {
    // Prepare: banned, then the process restarts after the cool-down
    const clock = new ManualClock();
    const store = memoryStore();
    const a = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store, bannedCooldownMs: 3_600_000 });
    expect(a.tryAcquire()).toBe(true);
    a.update({ status: 403 });
    clock.t += 3_600_001;
    const b = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store, bannedCooldownMs: 3_600_000 });
    // Act
    let n = 0;
    while (b.tryAcquire() && n < 20) n++;
    clock.t += 100;
    b.update({ status: 200, rl: 14, ttl: 60 });
    const c = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, store, bannedCooldownMs: 3_600_000 });
    let m = 0;
    while (c.tryAcquire() && m < 20) m++;
    // Assess: one probe; once it succeeded the flag is gone from the store too
    expect(n).toBe(1);
    expect(store.state?.probing).toBeUndefined();
    expect(m).toBe(14);
  });

  it("processes sharing one store keep each other's sends, and none counts its own send twice", () => {
    // Prepare: A sends one, B (same data directory) sees it and sends two
    const clock = new ManualClock();
    const store = memoryStore();
    const mk = () => new RateLimiter({ requestsPerWindow: 3, windowS: 60, clock, store, marginMs: 0 });
    const a = mk();
    const b = mk();
    const sentA = clock.t;
    expect(a.tryAcquire()).toBe(true);
    clock.t += 10;
    expect(b.tryAcquire()).toBe(true);
    clock.t += 10;
    expect(b.tryAcquire()).toBe(true);
    // Act: A's answer arrives and A saves; then a third process starts
    clock.t += 200;
    a.update({ status: 200, sentAt: sentA });
    clock.t += 10;
    const c = mk();
    let n = 0;
    while (c.tryAcquire() && n < 10) n++;
    // Assess: the window is full for C, and A holds exactly its own send plus B's two
    expect(n).toBe(0);
    expect(store.state?.sends).toHaveLength(3);
    clock.t += 59_795; // B's two sends have left the window, A's answer has not
    expect(a.remaining()).toBe(2);
  });

  it("a process does not read back its own send's allow time as another process's send", () => {
    // Prepare: A sends, B sees A's open send and sends too; both answers arrive, each process saves
    const clock = new ManualClock();
    const store = memoryStore();
    const mk = () => new RateLimiter({ requestsPerWindow: 4, windowS: 60, clock, store, marginMs: 0 });
    const a = mk();
    const b = mk();
    const sentA = clock.t;
    expect(a.tryAcquire()).toBe(true);
    clock.t += 10;
    const sentB = clock.t;
    expect(b.tryAcquire()).toBe(true);
    clock.t += 190;
    a.update({ status: 200, sentAt: sentA });
    clock.t += 100;
    b.update({ status: 200, sentAt: sentB }); // B saves A's allow time again
    clock.t += 100;
    // Act
    const allowed = a.tryAcquire();
    // Assess: A counts at most its own answer time and B's send (twice: allow and answer), never its own allow time
    expect(allowed).toBe(true);
    expect(store.state?.sends).not.toContain(sentA);
  });

  it("file store: round trip, and a missing or corrupt file means no state", () => {
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-limiter-"));
    dirs.push(dir);
    const path = join(dir, "sub", "budget.json");
    const store = fileLimiterStore(path);
    expect(store.load()).toBeUndefined();
    store.save({ sends: [1, 2, 3], pausedUntil: 4, bannedUntil: 5 });
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ sends: [1, 2, 3], pausedUntil: 4, bannedUntil: 5 });
    expect(store.load()).toEqual({ sends: [1, 2, 3], pausedUntil: 4, bannedUntil: 5 });
    writeFileSync(path, "{not json");
    expect(store.load()).toBeUndefined();
    writeFileSync(path, JSON.stringify({ sends: ["x", 7, null], pausedUntil: "soon", probing: "yes" }));
    expect(store.load()).toEqual({ sends: [7], pausedUntil: 0, bannedUntil: 0 });
    store.save({ sends: [], pausedUntil: 0, bannedUntil: 5, probing: true });
    expect(store.load()).toEqual({ sends: [], pausedUntil: 0, bannedUntil: 5, probing: true });
  });
});
