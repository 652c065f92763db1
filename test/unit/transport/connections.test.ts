/** Reading the open-file limit, the start-up warning about connection caps, and closing idle connections. */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { ConnectionLimiter, connectionCapWarning, fileDescriptorLimit } from "../../../src/transport/connections.js";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             unlimited            unlimited            processes
Max open files            20000                40000                files
Max locked memory         8388608              8388608              bytes
`;

describe("fileDescriptorLimit", () => {
  it("reads the soft open-file limit from /proc/self/limits text", () => {
    expect(fileDescriptorLimit(LIMITS)).toBe(20000);
    expect(fileDescriptorLimit(LIMITS.replace("20000    ", "unlimited"))).toBe(Number.POSITIVE_INFINITY);
    expect(fileDescriptorLimit("nothing here")).toBeUndefined();
  });

  it("reads this process's limit on Linux", () => {
    const n = fileDescriptorLimit();
    if (process.platform === "linux") expect(n).toBeGreaterThan(0);
  });
});

describe("connectionCapWarning", () => {
  it("warns when the caps together pass 75% of the limit, naming both keys and the limit", () => {
    expect(connectionCapWarning({ http: 1024, grpc: 1024 }, 4096)).toBeUndefined();
    const w = connectionCapWarning({ http: 1024, grpc: 1024 }, 1024);
    expect(w).toContain("http.max_connections + grpc.max_connections is 2048");
    expect(w).toContain("(1024)");
    expect(connectionCapWarning({ http: 700, grpc: 0 }, 1024)).toBeUndefined();
    expect(connectionCapWarning({ http: 800, grpc: 0 }, 1024)).toBeDefined();
    expect(connectionCapWarning({ http: 300, grpc: 300, fluent: 300 }, 1024)).toContain("http.max_connections + grpc.max_connections + fluent.max_connections is 900");
    expect(connectionCapWarning({ http: 10 ** 6 }, undefined)).toBeUndefined();
    expect(connectionCapWarning({ http: 10 ** 6 }, Number.POSITIVE_INFINITY)).toBeUndefined();
  });
});

/** A socket as the limiter sees it: a peer, bytes read, and destroy() that closes it. */
function fakeSocket(port: number, bytesRead = 1): Socket & { destroyed: boolean } {
  const s = Object.assign(new EventEmitter(), {
    remoteAddress: "10.0.0.1",
    remotePort: port,
    bytesRead,
    destroyed: false,
    destroy() {
      if (!s.destroyed) {
        s.destroyed = true;
        s.emit("close");
      }
      return s;
    },
  });
  return s as unknown as Socket & { destroyed: boolean };
}

describe("ConnectionLimiter.destroyIdle", () => {
  it("destroys the connections without a request in progress and leaves the busy ones open until they are done", () => {
    const limiter = new ConnectionLimiter({ transport: "fluent", maxConnections: 10, firstByteTimeoutMs: 0, reserved: 0, evict: "request", metrics: createMetrics(), logger: silentLogger() });
    const [idle, busy, finished] = [fakeSocket(1), fakeSocket(2), fakeSocket(3)];
    for (const s of [idle, busy, finished]) expect(limiter.accept(s)).toBe(true);
    limiter.requestStarted(busy);
    limiter.requestStarted(finished)();
    limiter.destroyIdle();
    expect([idle.destroyed, busy.destroyed, finished.destroyed]).toEqual([true, false, true]);
    expect(limiter.size).toBe(1);
    limiter.destroyAll();
    expect(busy.destroyed).toBe(true);
    expect(limiter.size).toBe(0);
  });
});

describe("ConnectionLimiter.destroySilent", () => {
  it("destroys the connections that have not sent a byte and leaves the others open", () => {
    const limiter = new ConnectionLimiter({ transport: "http", maxConnections: 10, firstByteTimeoutMs: 0, reserved: 0, evict: "request", metrics: createMetrics(), logger: silentLogger() });
    const [silent, spoke] = [fakeSocket(1, 0), fakeSocket(2, 5)];
    for (const s of [silent, spoke]) expect(limiter.accept(s)).toBe(true);
    limiter.destroySilent();
    expect([silent.destroyed, spoke.destroyed]).toEqual([true, false]);
    expect(limiter.size).toBe(1);
  });
});
