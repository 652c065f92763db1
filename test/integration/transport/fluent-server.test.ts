/**
 * The forward protocol listener's rules that need no Fluent Bit: no ack when the next hop
 * does not ack, garbage and oversize input close the connection and nothing else, a half
 * message is not waited for forever, close() closes idle connections first and lets a
 * message in work settle, a listener without a next hop does not start.
 * (Each mode against the real Fluent Bit's in_forward: test/integration/fluent-bit.)
 */
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { pack, unpack } from "msgpackr";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../../src/app.js";
import { startServe } from "../../../src/cli/serve.js";
import { ConfigError, loadConfig } from "../../../src/config.js";
import { FluentForwarder } from "../../../src/transport/fluent-forwarder.js";
import { startHarness, type Harness } from "./harness.js";

/** A next hop that accepts connections and reads, but never answers (a hung in_forward). */
async function silentNextHop(): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let bytes = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on("data", (b) => (bytes += b.length));
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    received: () => bytes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Connects to `addr`, writes `bytes`, and resolves what came back and whether the server closed the connection within `ms`. */
function exchange(addr: string, bytes: Buffer, ms: number): Promise<{ answer: Buffer; closed: boolean; closedAfterMs: number }> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    const s = net.connect(port, host, () => s.write(bytes));
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ answer: Buffer.concat(chunks), closed, closedAfterMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on("data", (b) => chunks.push(b));
    s.on("error", () => finish(true));
    s.on("close", () => finish(true));
  });
}

describe("Fluent forward listener", () => {
  let h: Harness | undefined;
  let hop: Awaited<ReturnType<typeof silentNextHop>> | undefined;
  afterEach(async () => {
    await h?.close();
    await hop?.close();
    h = undefined;
    hop = undefined;
  });

  it("sends no ack while the next hop has not acked, and closes the connection after fluent.timeout_ms", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, timeout_ms: 800 } });
    const msg = pack(["dns.raw", 1_700_000_000, { query_name: "example.com", answers: [{ Rdata: "8.8.8.8", Type: "A" }] }, { chunk: "c-1" }]);
    // Act
    const r = await exchange(h.serve.fluentAddress ?? "", msg, 5000);
    // Assess
    expect(r.answer.length).toBe(0);
    expect(r.closed).toBe(true);
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(700);
    expect(hop.received()).toBeGreaterThan(0);
    const messages = (await h.app.metrics.fluentMessages.get()).values;
    expect(messages.map((v) => [v.labels.result, v.value])).toEqual([["next_hop_unavailable", 1]]);
    expect((await h.app.metrics.fluentNextHopMessages.get()).values.find((v) => v.labels.result === "failed")?.value).toBeGreaterThan(0);
  });

  it("closes a connection that sends garbage, and keeps serving others (fast-check)", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, timeout_ms: 200 } });
    const addr = h.serve.fluentAddress ?? "";
    // Act / Assess: anything that is not nil or an array at the top is refused at once.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }).filter((b) => b[0] !== 0xc0 && !((b[0] as number) >= 0x90 && (b[0] as number) <= 0x9f) && b[0] !== 0xdc && b[0] !== 0xdd), async (bytes) => {
        const r = await exchange(addr, Buffer.from(bytes), 3000);
        expect(r.closed).toBe(true);
        expect(r.answer.length).toBe(0);
      }),
      { numRuns: 60 },
    );
    // Arrays of garbage inside: closed, or waited for (a half message) — never an ack, never a crash.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const r = await exchange(addr, Buffer.concat([Buffer.from([0x93]), Buffer.from(bytes)]), 250);
        expect(r.answer.length).toBe(0);
      }),
      { numRuns: 30 },
    );
    const live = await fetch(`${h.httpUrl}/livez`);
    expect(live.status).toBe(200);
  }, 120_000);

  it("closes a connection whose message announces more than fluent.max_message_bytes, before reading it", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, max_message_bytes: 64 * 1024 } });
    const head = Buffer.from([0x93, 0xa1, 0x74, 0xc6, 0x00, 0x10, 0x00, 0x00]); // ["t", bin32 of 1 MiB ...
    // Act
    const r = await exchange(h.serve.fluentAddress ?? "", head, 3000);
    // Assess
    expect(r.closed).toBe(true);
    expect(r.closedAfterMs).toBeLessThan(2000);
  });

  it("does not wait forever for the rest of a half-sent message (fluent.message_timeout_ms)", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, message_timeout_ms: 500 } });
    const msg = pack(["t", 1, { a: "b".repeat(100) }, { chunk: "x" }]);
    // Act
    const r = await exchange(h.serve.fluentAddress ?? "", msg.subarray(0, 40), 5000);
    // Assess
    expect(r.closed).toBe(true);
    expect(r.closedAfterMs).toBeLessThan(3000);
  });

  it("closes a connection that sends nothing within fluent.first_byte_timeout_ms, and at fluent.max_connections the one idle longest", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, first_byte_timeout_ms: 600, max_connections: 2 } });
    const addr = h.serve.fluentAddress ?? "";
    // Act: a silent connection; then three at a cap of two.
    const silent = await exchange(addr, Buffer.alloc(0), 5000);
    const first = exchange(addr, Buffer.alloc(0), 3000);
    await new Promise((r) => setTimeout(r, 100));
    const second = exchange(addr, Buffer.from([0xc0]), 3000);
    await new Promise((r) => setTimeout(r, 100));
    const third = exchange(addr, Buffer.from([0xc0]), 300);
    const [f, s2, t] = await Promise.all([first, second, third]);
    // Assess
    expect(silent.closed).toBe(true);
    expect(silent.closedAfterMs).toBeGreaterThanOrEqual(500);
    expect(silent.closedAfterMs).toBeLessThan(3000);
    expect(f.closed).toBe(true);
    expect(f.closedAfterMs).toBeLessThan(500);
    expect(s2.closed).toBe(false);
    expect(t.closed).toBe(false);
    const closedBy = (await h.app.metrics.connectionsClosed.get()).values.filter((v) => v.labels.transport === "fluent");
    expect(Object.fromEntries(closedBy.map((v) => [v.labels.reason, v.value]))).toEqual({ first_byte_timeout: 1, evicted: 1 });
  });

  it("closes a message's connection without an ack when every fluent.max_inflight_messages slot is taken: the shipper sends it again", async () => {
    // Prepare: the one slot is held by a message whose next hop never acks.
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, timeout_ms: 3000, max_inflight_messages: 1 } });
    const addr = h.serve.fluentAddress ?? "";
    const msg = (chunk: string): Buffer => pack(["dns.raw", 1_700_000_000, { query_name: "example.com", answers: [{ Rdata: "8.8.8.8", Type: "A" }] }, { chunk }]);
    const holder = exchange(addr, msg("c-1"), 5000);
    await new Promise((r) => setTimeout(r, 300));
    // Act
    const refused = await exchange(addr, msg("c-2"), 2000);
    // Assess
    expect(refused.closed).toBe(true);
    expect(refused.answer.length).toBe(0);
    expect(refused.closedAfterMs).toBeLessThan(1000);
    const results = (await h.app.metrics.fluentMessages.get()).values;
    expect(results.find((v) => v.labels.result === "overload")?.value).toBe(1);
    const refusals = (await h.app.metrics.refused.get()).values.find((v) => v.labels.transport === "fluent" && v.labels.reason === "overload");
    expect(refusals?.value).toBe(1);
    expect((await holder).answer.length).toBe(0);
  });

  it("closes, without an ack, a connection whose bytes would pass its address's share of fluent.max_buffered_bytes", async () => {
    // Prepare: a share of 32 KiB per address; one connection holds 30 KiB of a message.
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, max_buffered_bytes: 64 * 1024 } });
    const addr = h.serve.fluentAddress ?? "";
    const big = pack(["t", 1, { a: "b".repeat(60_000) }, { chunk: "x" }]);
    const holder = exchange(addr, big.subarray(0, 30_000), 3000);
    await new Promise((r) => setTimeout(r, 300));
    // Act: a second connection from the same address sends 30 KiB more.
    const over = await exchange(addr, big.subarray(0, 30_000), 3000);
    // Assess
    expect(over.closed).toBe(true);
    expect(over.closedAfterMs).toBeLessThan(1000);
    expect((await h.app.metrics.fluentMessages.get()).values.find((v) => v.labels.result === "overload")?.value).toBe(1);
    // The first connection, alone, was left waiting for the rest of its message.
    expect((await holder).closed).toBe(false);
  });

  it("on close, closes idle connections at once and leaves a connection with a message in work open until the message settles", async () => {
    // Prepare: one connection's message waits on a next hop that never acks; another has sent only a heartbeat.
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}`, timeout_ms: 1500 } });
    const addr = h.serve.fluentAddress ?? "";
    const busy = exchange(addr, pack(["dns.raw", 1_700_000_000, { query_name: "example.com" }, { chunk: "c-1" }]), 5000);
    const idle = exchange(addr, Buffer.from([0xc0]), 5000);
    await new Promise((r) => setTimeout(r, 300));
    // Act
    const closing = h.close();
    // Assess: the idle one goes now; the busy one when its message gives up (fluent.timeout_ms), without an ack.
    const [i, b] = await Promise.all([idle, busy]);
    await closing;
    expect(i.closed).toBe(true);
    expect(i.closedAfterMs).toBeLessThan(1000);
    expect(b.closed).toBe(true);
    expect(b.closedAfterMs).toBeGreaterThanOrEqual(1400);
    expect(b.answer.length).toBe(0);
  });

  it("ignores nil heartbeats between messages", async () => {
    // Prepare
    hop = await silentNextHop();
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${hop.port}` } });
    // Act
    const r = await exchange(h.serve.fluentAddress ?? "", Buffer.from([0xc0, 0xc0, 0xc0]), 600);
    // Assess
    expect(r.closed).toBe(false);
  });

  it("refuses to start with fluent.listen but no fluent.next_hop (a listener with nowhere to send)", async () => {
    // Prepare
    const config = loadConfig({ overrides: { data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-fluent-")), http: { port: 0 }, grpc: { enabled: false }, cache: { sqlite: { enabled: false } }, ipapi: { enabled: false }, fluent: { listen: "127.0.0.1:0" } } });
    const app = await createApp(config);
    try {
      // Act / Assess
      await expect(startServe(app)).rejects.toBeInstanceOf(ConfigError);
    } finally {
      await app.close();
    }
  });
});

describe("Fluent next hop", () => {
  it("takes an ack that arrived while the event loop was blocked past fluent.timeout_ms, and does not send again", async () => {
    // Prepare: a next hop that acks each message, then blocks this process for longer than the timeout.
    const messages: Buffer[] = [];
    const srv = net.createServer((s) => {
      s.on("data", (b) => {
        messages.push(b);
        const chunk = (unpack(b) as [string, Buffer, { chunk: string }])[2].chunk;
        s.write(pack({ ack: chunk }));
        const until = Date.now() + 400;
        while (Date.now() < until);
      });
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const cfg = loadConfig({ overrides: { fluent: { next_hop: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, timeout_ms: 200 } } }).fluent;
    const fwd = new FluentForwarder(cfg);
    try {
      // Act
      const ok = await fwd.send("dns.raw", [pack([1_700_000_000, { a: 1 }])]);
      // Assess
      expect(ok).toBe(true);
      expect(messages.length).toBe(1);
    } finally {
      await fwd.close();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});
