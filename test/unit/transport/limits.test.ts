import { describe, expect, it } from "vitest";
import { stat } from "node:fs";
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
    expect(guard.later()).toBeUndefined();
  });

  it("later(): calls that arrive past the turn's first fifth start on later turns, a fifth of the budget per turn, in order", async () => {
    // Prepare
    let now = 1000;
    const guard = new LoopTurnGuard(100, () => now);
    const started: string[] = [];
    const turnsSeen: number[] = [];
    // Counts the loop's turns (an immediate queued from the check phase runs on the next one).
    let turn = 0;
    let ticking = true;
    const tick = (): void => {
      turn++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    // Each call's work takes 15 ms: two fit in a turn's 20 ms.
    const work = (name: string) => (): void => {
      started.push(name);
      turnsSeen.push(turn);
      now += 15;
    };
    // Act
    const first = guard.later();
    now += 15;
    const early = guard.later();
    now += 10;
    const waits = ["a", "b", "c"].map((name) => guard.later()?.then(work(name)));
    // One arriving on a fresh turn still queues behind those already waiting.
    await new Promise((r) => setImmediate(r));
    const behind = guard.later()?.then(work("d"));
    await Promise.all([...waits, behind]);
    ticking = false;
    // Assess
    expect(first).toBeUndefined();
    expect(early).toBeUndefined();
    expect(waits.every((w) => w !== undefined)).toBe(true);
    expect(started).toEqual(["a", "b", "c", "d"]);
    // a and b on one turn, c and d on the next.
    expect(turnsSeen[0]).toBe(turnsSeen[1]);
    expect(turnsSeen[2]).toBe(turnsSeen[3]);
    expect(turnsSeen[2]).toBeGreaterThan(turnsSeen[1] as number);
    // Once nobody waits, a fresh turn starts work at once again, and a request arriving
    // after the loop sat idle is not taken for one that waited behind a long turn.
    now += 500;
    // Asked from an I/O callback (the poll phase, as a request arrives), before this turn's check phase.
    const afterIdle = await new Promise<boolean>((r) => stat(".", () => r(guard.exceeded())));
    expect(afterIdle).toBe(false);
    expect(guard.later()).toBeUndefined();
  });
});
