/**
 * Hostile HTTP clients against the real server: slow bodies, one address taking every
 * slot, answers never read, loops of refused requests. Attackers connect from
 * 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), the well-behaved client from
 * 127.0.0.1, so per-address shares can be told apart.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { createApp, type App } from "../../../src/app.js";
import { startServe, type ServeHandle } from "../../../src/cli/serve.js";
import { loadConfig } from "../../../src/config.js";
import * as grpc from "@grpc/grpc-js";
import { enrichmentClient } from "./grpc-client.js";
import { captureLog } from "../../helpers/log-capture.js";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";

const ATTACKER = "127.0.0.2";

/** A served app with auth.token "s3cret-token", HTTP on port 0, gRPC as `grpcConfig` says, and the log lines it wrote. */
async function serveWithToken(grpcConfig: { enabled: false } | { port: number }): Promise<{ app: App; serve: ServeHandle; lines: string[] }> {
  const { logger, lines } = captureLog();
  const config = loadConfig({
    overrides: {
      data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-hostile-")),
      http: { port: 0, overload_turn_ms: 0 },
      grpc: grpcConfig,
      cache: { sqlite: { enabled: false } },
      ipapi: { enabled: false },
      auth: { token: "s3cret-token" },
    },
  });
  const app = await createApp(config, { logger });
  return { app, serve: await startServe(app), lines };
}

function ndjson(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(ROUTE53_LINES[i % ROUTE53_LINES.length] as string);
  return lines.join("\n") + "\n";
}

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

async function connect(url: string, localAddress?: string): Promise<net.Socket> {
  const { host, port } = hostPort(url);
  const sock = net.connect(Object.assign({ host, port }, localAddress ? { localAddress } : {}));
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  sock.on("error", () => undefined);
  return sock;
}

/** Collects what a socket receives until it closes or `ms` pass. */
function received(sock: net.Socket, ms: number): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = "";
    const done = (closed: boolean): void => {
      clearTimeout(t);
      resolve({ text, closed });
    };
    const t = setTimeout(() => done(false), ms);
    sock.on("data", (c: Buffer) => (text += c.toString("latin1")));
    sock.once("close", () => done(true));
  });
}

async function enrich(url: string, body: string, localAddress?: string): Promise<number> {
  // A fresh connection each time, from the given address.
  const sock = await connect(url, localAddress);
  const got = received(sock, 10_000);
  sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  const { text } = await got;
  return Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0);
}

describe("hostile HTTP clients", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("answers 408 and closes the connection when a body trickles past http.body_timeout_ms, and frees its slot", async () => {
    h = await startHarness({ http: { body_timeout_ms: 300, max_inflight_requests: 1 } });
    const sock = await connect(h.httpUrl, ATTACKER);
    const got = received(sock, 5000);
    sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{`);
    const t0 = Date.now();
    const trickle = setInterval(() => sock.write(" "), 100);
    const { text, closed } = await got;
    clearInterval(trickle);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain("DNSGEO_BODY_TIMEOUT");
    expect(closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await enrich(h.httpUrl, ndjson(3))).toBe(200);
  });

  it("leaves slots to other addresses when one address holds its share (http.max_inflight_per_client)", async () => {
    h = await startHarness({ http: { max_inflight_requests: 4, max_inflight_per_client: 2, body_timeout_ms: 10_000 } });
    const slow: net.Socket[] = [];
    const answers: Array<Promise<{ text: string; closed: boolean }>> = [];
    for (let i = 0; i < 3; i++) {
      const s = await connect(h.httpUrl, ATTACKER);
      answers.push(received(s, 1500));
      s.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{`);
      slow.push(s);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The third slow request from the same address is refused at once; the first two wait for their bodies.
    const third = await answers[2];
    if (third === undefined) throw new Error("no third answer");
    expect(third.text).toMatch(/^HTTP\/1\.1 503 /);
    expect(third.text.toLowerCase()).toContain("retry-after: 1");
    // Another address still gets both of the remaining slots.
    const [a, b] = await Promise.all([enrich(h.httpUrl, ndjson(3), "127.0.0.1"), enrich(h.httpUrl, ndjson(3), "127.0.0.1")]);
    expect([a, b]).toEqual([200, 200]);
    expect((await answers[0])?.text).toBe("");
    for (const s of slow) s.destroy();
  });

  it("refuses new batches from an address whose unread answers hold its share of http.max_buffered_bytes, not others; closes the unread connection after http.send_timeout_ms", async () => {
    // 8 MiB process-wide, 4 MiB for one address; the answer of 15 000 records (~17 MB) is
    // more than loopback's socket buffers take, so most of it waits in the server.
    h = await startHarness({ http: { max_buffered_bytes: 8 * 1024 * 1024, send_timeout_ms: 3000 } });
    const big = ndjson(15_000);
    const sock = await connect(h.httpUrl, ATTACKER);
    sock.pause();
    let closed = false;
    sock.once("close", () => (closed = true));
    sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(big)}\r\n\r\n${big}`);
    await new Promise((r) => setTimeout(r, 1500));
    expect(closed).toBe(false);
    expect(await enrich(h.httpUrl, ndjson(3), ATTACKER)).toBe(503);
    expect(await enrich(h.httpUrl, ndjson(3), "127.0.0.1")).toBe(200);
    // The server gives up on the unread answer and lets its bytes go: the address is served again.
    const t0 = Date.now();
    let status = 503;
    while (status === 503 && Date.now() - t0 < 8000) {
      await new Promise((r) => setTimeout(r, 250));
      status = await enrich(h.httpUrl, ndjson(3), ATTACKER);
    }
    expect(status).toBe(200);
    // The unread connection was closed before the whole answer went out (a paused socket sees that once it reads).
    let got = 0;
    sock.on("data", (c: Buffer) => (got += c.length));
    sock.resume();
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(true);
    expect(got).toBeLessThan(Buffer.byteLength(big) * 2);
  });

  it("logs a loop of 401s once per window with a count, and cuts a 12 KB Content-Encoding in the answer and the log", async () => {
    const { app, serve, lines } = await serveWithToken({ enabled: false });
    try {
      const url = `http://${serve.httpAddress ?? ""}/v1/enrich`;
      for (let i = 0; i < 200; i++) {
        const r = await request(url, { method: "POST", body: "{}", headers: { authorization: `Bearer wrong-${i}` } });
        await r.body.text();
        expect(r.statusCode).toBe(401);
      }
      // As long as node's header limit (16 KiB for all headers) lets through.
      const huge = "x".repeat(12 * 1024);
      const r = await request(url, { method: "POST", body: "{}", headers: { authorization: "Bearer s3cret-token", "content-encoding": huge } });
      const answer = await r.body.text();
      expect(r.statusCode).toBe(415);
      expect(answer.length).toBeLessThan(400);
      expect(answer).toContain("(12288 characters)");
    } finally {
      await serve.close();
      await app.close();
    }
    const unauthorized = lines.filter((l) => l.includes("bearer token"));
    expect(unauthorized.length).toBe(1);
    expect(lines.every((l) => l.length < 2000)).toBe(true);
    expect(lines.some((l) => l.includes("unsupported Content-Encoding"))).toBe(true);
  });

  it("logs a loop of unauthenticated gRPC calls once per window too", async () => {
    const { app, serve, lines } = await serveWithToken({ port: 0 });
    const client = enrichmentClient(serve.grpcAddress ?? "");
    try {
      for (let i = 0; i < 100; i++) {
        const md = new grpc.Metadata();
        md.set("authorization", `Bearer wrong-${i}`);
        const code = await new Promise<number>((resolve) => client.Enrich({ records: ["{}"] }, md, (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)));
        expect(code).toBe(grpc.status.UNAUTHENTICATED);
      }
    } finally {
      client.close();
      await serve.close();
      await app.close();
    }
    expect(lines.filter((l) => l.includes("bearer token")).length).toBe(1);
  });
});
