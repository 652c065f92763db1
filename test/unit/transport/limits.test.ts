import { describe, expect, it } from "vitest";
import { InflightLimiter, LoopTurnGuard, within } from "../../../src/transport/limits.js";

describe("InflightLimiter", () => {
  it("refuses past max and frees slots on release", () => {
    // Prepare
    const l = new InflightLimiter(2);
    // Act
    const taken = [l.tryAcquire(), l.tryAcquire(), l.tryAcquire()];
    l.release();
    const again = l.tryAcquire();
    // Assess
    expect(taken).toEqual([true, true, false]);
    expect(again).toBe(true);
    expect(l.inflight).toBe(2);
  });

  it("idle() resolves when the last slot is released", async () => {
    // Prepare
    const l = new InflightLimiter(3);
    l.tryAcquire();
    l.tryAcquire();
    let done = false;
    const p = l.idle().then(() => (done = true));
    // Act
    l.release();
    await Promise.resolve();
    const afterOne = done;
    l.release();
    await p;
    // Assess
    expect(afterOne).toBe(false);
    expect(done).toBe(true);
  });
});

describe("within", () => {
  it("says whether the promise settled in time", async () => {
    expect(await within(Promise.resolve(), 1000)).toBe(true);
    expect(await within(Promise.reject(new Error("x")), 1000)).toBe(true);
    expect(await within(new Promise(() => {}), 5)).toBe(false);
  });
});

describe("LoopTurnGuard", () => {
  it("refuses requests that arrive after the current event-loop turn ran past its budget, and resets each turn", async () => {
    // Prepare
    let now = 1000;
    const guard = new LoopTurnGuard(100, () => now);
    // Act
    const first = guard.exceeded();
    now += 50;
    const within = guard.exceeded();
    now += 60;
    const late = guard.exceeded();
    await new Promise((r) => setImmediate(r));
    const nextTurn = guard.exceeded();
    // Assess
    expect([first, within, late, nextTurn]).toEqual([false, false, true, false]);
  });

  it("is off at 0", () => {
    let now = 0;
    const guard = new LoopTurnGuard(0, () => now);
    guard.exceeded();
    now += 10_000;
    expect(guard.exceeded()).toBe(false);
  });
});
