import { describe, expect, it } from "vitest";
import { BackfillQueue } from "../../../src/lookup/backfill-queue.js";
import { createMetrics } from "../../../src/observability/metrics.js";

describe("BackfillQueue", () => {
  it("never holds an IP twice, whether queued or in flight", () => {
    // Prepare
    const q = new BackfillQueue({ max: 10 });
    // Act
    const added = [q.add("1.1.1.1"), q.add("1.1.1.1"), q.add("8.8.8.8")];
    const taken = q.take(1);
    const again = q.add("1.1.1.1");
    q.done(taken);
    const afterDone = q.add("1.1.1.1");
    // Assess
    expect(added).toEqual([true, false, true]);
    expect(taken).toEqual(["1.1.1.1"]);
    expect(again).toBe(false);
    expect(afterDone).toBe(true);
    expect(q.take(10)).toEqual(["8.8.8.8", "1.1.1.1"]);
  });

  it("drops the oldest first when full, counts and reports each drop, and publishes its depth", async () => {
    // Prepare
    const metrics = createMetrics();
    const dropped: string[] = [];
    const q = new BackfillQueue({ max: 2, metrics, onDrop: (ip) => dropped.push(ip) });
    // Act
    for (const ip of ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"]) q.add(ip);
    // Assess
    expect(dropped).toEqual(["1.0.0.1", "1.0.0.2"]);
    expect(q.dropped).toBe(2);
    expect(q.take(5)).toEqual(["1.0.0.3", "1.0.0.4"]);
    expect((await metrics.queueDropped.get()).values[0]?.value).toBe(2);
    expect((await metrics.queueDepth.get()).values[0]?.value).toBe(0);
  });

  it("puts failed IPs back at the head, ahead of newer ones", () => {
    // Prepare
    const q = new BackfillQueue({ max: 10 });
    q.add("1.0.0.1");
    q.add("1.0.0.2");
    const batch = q.take(1);
    q.add("1.0.0.3");
    // Act
    q.requeue(batch);
    // Assess
    expect(q.inFlight).toBe(0);
    expect(q.take(10)).toEqual(["1.0.0.1", "1.0.0.2", "1.0.0.3"]);
  });
});
