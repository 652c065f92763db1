import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { silentLogger } from "../../../src/observability/logger.js";

function manualClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function limiter(clock: { now(): number }, extra: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {}) {
  return new RateLimiter(Object.assign({ requestsPerWindow: 15, windowS: 60, clock, marginMs: 1000, random: () => 0.5, logger: silentLogger() }, extra));
}

describe("RateLimiter", () => {
  it("allows the window's budget, then waits until the oldest send leaves the sliding window", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock);
    // Act
    const granted = Array.from({ length: 20 }, () => l.tryAcquire()).filter(Boolean).length;
    for (let i = 0; i < granted; i++) l.update({ status: 200 });
    const wait = l.waitMs();
    clock.advance(wait - 1);
    const early = l.tryAcquire();
    clock.advance(1);
    const onTime = l.tryAcquire();
    // Assess
    expect(granted).toBe(15);
    expect(wait).toBe(61_000);
    expect(early).toBe(false);
    expect(onTime).toBe(true);
  });

  it("keeps an unanswered send's slot however long its answer takes", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock, { requestsPerWindow: 1 });
    const sentAt = clock.now();
    l.tryAcquire();
    // Act
    clock.advance(120_000);
    const whileOpen = l.tryAcquire();
    l.update({ status: 200, sentAt });
    // Assess
    expect(whileOpen).toBe(false);
    expect(l.waitMs()).toBe(61_000);
  });

  it("counts a send's window from when its answer came, not from when it was allowed", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock, { requestsPerWindow: 1 });
    const sentAt = clock.now();
    l.tryAcquire();
    // Act: the answer takes 5 s (a busy loop or a slow network may have held the request).
    clock.advance(5_000);
    l.update({ status: 200, sentAt });
    // Assess
    expect(l.waitMs()).toBe(61_000);
  });

  it("sends nothing while X-Rl is 0 until X-Ttl has passed", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock);
    const sentAt = clock.now();
    l.tryAcquire();
    // Act
    l.update({ status: 200, rl: 0, ttl: 7, sentAt });
    const blocked = l.tryAcquire();
    clock.advance(7_000 + 999);
    const stillBlocked = l.tryAcquire();
    clock.advance(1);
    const allowed = l.tryAcquire();
    // Assess
    expect(blocked).toBe(false);
    expect(stillBlocked).toBe(false);
    expect(allowed).toBe(true);
  });

  it("trusts a lower X-Rl from the server until its X-Ttl passes", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock);
    l.tryAcquire();
    // Act: the server (shared NAT) says 2 left, though locally 14 are.
    l.update({ status: 200, rl: 2, ttl: 30 });
    const granted = Array.from({ length: 5 }, () => l.tryAcquire()).filter(Boolean).length;
    clock.advance(31_000);
    const afterReset = l.tryAcquire();
    // Assess
    expect(granted).toBe(2);
    expect(afterReset).toBe(true);
  });

  it("within one server window, a late answer with a higher X-Rl does not raise the count", () => {
    // Prepare: two sends; the second one's answer comes first
    const clock = manualClock();
    const l = limiter(clock);
    const first = clock.now();
    l.tryAcquire();
    clock.advance(10);
    const second = clock.now();
    l.tryAcquire();
    clock.advance(100);
    l.update({ status: 200, rl: 5, ttl: 30, sentAt: second });
    // Act: the first send's older answer (counted before the other's) arrives late
    clock.advance(100);
    l.update({ status: 200, rl: 10, ttl: 30, sentAt: first });
    // Assess: still the lower count (5 minus the send that was open then)
    expect(l.remaining()).toBe(4);
  });

  it("pauses after a 429 until X-Ttl, logs once and counts every 429", () => {
    // Prepare
    const clock = manualClock();
    const warnings: unknown[] = [];
    const logger = Object.assign(silentLogger(), { warn: (...a: unknown[]) => void warnings.push(a) });
    const l = limiter(clock, { logger });
    // Act
    l.tryAcquire();
    l.update({ status: 429, rl: 0, ttl: 20 });
    const during = l.waitMs();
    clock.advance(during);
    l.tryAcquire();
    l.update({ status: 429, ttl: 5 });
    // Assess
    expect(during).toBe(21_000);
    expect(l.waitMs()).toBe(6_000);
    expect(l.stats().status429).toBe(2);
    expect(l.stats().successes).toBe(0);
    expect(warnings).toHaveLength(1);
  });

  it("pauses a whole window after a 429 without X-Ttl", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock);
    // Act
    l.tryAcquire();
    l.update({ status: 429 });
    // Assess
    expect(l.waitMs()).toBe(61_000);
  });

  it("stops all sends after a 403 with an error log, then lets one probe through after the cool-down", () => {
    // Prepare
    const clock = manualClock();
    const errors: unknown[] = [];
    const logger = Object.assign(silentLogger(), { error: (...a: unknown[]) => void errors.push(a) });
    const metrics = createMetrics();
    const l = limiter(clock, { logger, metrics, bannedCooldownMs: 3_600_000 });
    // Act
    l.tryAcquire();
    l.update({ status: 403 });
    const banned = l.banned;
    clock.advance(3_599_999);
    const beforeCooldown = l.tryAcquire();
    clock.advance(1);
    const probe = l.tryAcquire();
    const secondWhileProbing = l.tryAcquire();
    l.update({ status: 200, rl: 14, ttl: 60 });
    const afterProbe = l.tryAcquire();
    // Assess
    expect(banned).toBe(true);
    expect(beforeCooldown).toBe(false);
    expect(probe).toBe(true);
    expect(secondWhileProbing).toBe(false);
    expect(afterProbe).toBe(true);
    expect(errors).toHaveLength(1);
    expect(l.stats().failures).toBe(1);
  });

  it("backs off exponentially with jitter on network errors and clears on success", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock, { backoffBaseMs: 1000, backoffMaxMs: 8000, random: () => 0 });
    const waits: number[] = [];
    // Act
    for (let i = 0; i < 5; i++) {
      clock.advance(l.waitMs());
      expect(l.tryAcquire()).toBe(true);
      l.update({ status: 0, error: "timeout" });
      waits.push(l.waitMs());
    }
    clock.advance(l.waitMs());
    l.tryAcquire();
    l.update({ status: 200, rl: 10, ttl: 60 });
    // Assess: jitter 0 → half of 1 s, 2 s, 4 s, 8 s, 8 s (capped).
    expect(waits).toEqual([500, 1000, 2000, 4000, 4000]);
    expect(l.waitMs()).toBe(0);
    expect(l.stats()).toMatchObject({ successes: 1, failures: 5, refunds: 0 });
  });

  it("refunds a send that never reached the server, but not one that timed out after sending", () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock, { requestsPerWindow: 2, backoffBaseMs: 1, backoffMaxMs: 1 });
    // Act
    const a = clock.now();
    l.tryAcquire();
    l.update({ status: 0, error: "connect", sentAt: a });
    clock.advance(1);
    const b = clock.now();
    l.tryAcquire();
    l.update({ status: 0, error: "timeout", sentAt: b });
    clock.advance(1);
    const third = l.tryAcquire();
    clock.advance(1);
    const fourth = l.tryAcquire();
    // Assess: the refunded send freed its slot, the timed-out one did not.
    expect(third).toBe(true);
    expect(fourth).toBe(false);
    expect(l.stats()).toMatchObject({ successes: 0, failures: 2, refunds: 1 });
  });

  it("hands the local send back when the shared fleet budget says no", async () => {
    // Prepare
    const clock = manualClock();
    const l = limiter(clock, { requestsPerWindow: 1, shared: { tryAcquire: async () => ({ ok: false, retryAtMs: clock.now() + 5000 }) } });
    // Act
    const sent = await l.acquire();
    // Assess
    expect(sent).toBeUndefined();
    expect(l.waitMs()).toBe(5000);
    clock.advance(5000);
    expect(l.remaining()).toBe(1);
  });

  it("publishes the remaining budget as a gauge", async () => {
    // Prepare
    const clock = manualClock();
    const metrics = createMetrics();
    const l = limiter(clock, { metrics });
    // Act
    l.tryAcquire();
    l.tryAcquire();
    // Assess
    const g = await metrics.limiterRemaining.get();
    expect(g.values[0]?.value).toBe(13);
  });
});
