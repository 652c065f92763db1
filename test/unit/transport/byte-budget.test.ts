import { describe, expect, it } from "vitest";
import { ByteBudget, clientKey, Gate } from "../../../src/transport/byte-budget.js";
import { InflightLimiter } from "../../../src/transport/limits.js";

describe("clientKey", () => {
  it("keys IPv4 by address, IPv4-mapped IPv6 as its IPv4, IPv6 by /64", () => {
    expect(clientKey("10.0.0.1")).toBe("10.0.0.1");
    expect(clientKey("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(clientKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:2::99")).toBe(clientKey("2001:0db8:0001:0002:ffff::1"));
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientKey(undefined)).toBe("unknown");
  });
});

describe("InflightLimiter per client", () => {
  it("lets one client take at most its share, leaving the rest to others", () => {
    const l = new InflightLimiter(4, 2);
    expect(l.tryAcquire("a")).toBe(true);
    expect(l.tryAcquire("a")).toBe(true);
    expect(l.tryAcquire("a")).toBe(false);
    expect(l.tryAcquire("b")).toBe(true);
    expect(l.tryAcquire()).toBe(true);
    expect(l.tryAcquire("c")).toBe(false); // the process-wide cap
    l.release("a");
    expect(l.tryAcquire("a")).toBe(true);
    expect(l.inflight).toBe(4);
    for (const c of ["a", "a", "b", undefined]) l.release(c);
    expect(l.inflight).toBe(0);
    expect(l.tryAcquire("a") && l.tryAcquire("a")).toBe(true);
  });
});

describe("ByteBudget", () => {
  it("refuses growth past the client's share or the cap while anything else is held; one address counts against the cap with its share only", () => {
    const b = new ByteBudget(100, 50);
    const a1 = b.lease("a");
    expect(a1.resize(80)).toBe(true); // alone: a request larger than the share still goes on
    expect(b.full("a")).toBe(true);
    expect(b.full("b")).toBe(false); // "a" counts 50 against the cap, not 80
    const a2 = b.lease("a");
    expect(a2.resize(1)).toBe(false);
    const b1 = b.lease("b");
    expect(b1.resize(45)).toBe(true);
    const c1 = b.lease("c");
    expect(c1.resize(6)).toBe(false); // 50 + 45 + 6 > 100
    expect(c1.resize(5)).toBe(true);
    expect(b.full("d")).toBe(true);
    expect(b1.resize(46)).toBe(false);
    expect(b1.bytes).toBe(45);
    a1.hold(200); // an answer already made is held whatever the cap
    expect(b.used).toBe(250);
    a1.release();
    a1.release();
    expect(b.used).toBe(50);
    expect(b.usedBy("a")).toBe(0);
    expect(b.full("d")).toBe(false);
    expect(a1.resize(10)).toBe(true); // released leases count nothing
    expect(b.used).toBe(50);
    b1.release();
    c1.release();
    a2.release();
    expect(b.used).toBe(0);
    expect(b.full("a")).toBe(false);
  });
});

describe("Gate", () => {
  it("lets n through at once and the others in turn, each release counting once", async () => {
    const g = new Gate(1);
    const order: string[] = [];
    const a = await g.acquire();
    const b = g.acquire().then((r) => (order.push("b"), r));
    const c = g.acquire().then((r) => (order.push("c"), r));
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    a();
    a(); // a second call gives nothing back
    const rb = await b;
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(["b"]);
    rb();
    (await c)();
    const d = await g.acquire(); // free again
    d();
  });
});
