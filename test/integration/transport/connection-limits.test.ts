/**
 * Idle and excess connections on both ports: silent sockets and idle keep-alive
 * connections are closed, the connection caps hold, and /livez keeps answering when
 * the HTTP cap is reached. Real servers on port 0, small counts.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as net from "node:net";
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";
import { enrichmentClient, unary, type EnrichResponse } from "./grpc-client.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function metric(h: Harness, name: string, labels: Record<string, string>): Promise<number> {
  const m = h.app.metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((a, v) => a + v.value, 0);
}

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(address.slice(i + 1)) };
}

interface Probe {
  socket: net.Socket;
  /** Resolves with the milliseconds from connect to close. */
  closed: Promise<number>;
  data: () => string;
}

/** A TCP connection that sends `send` (or nothing) and records what comes back and when it closes. */
async function connect(address: string, send?: string): Promise<Probe> {
  const { host, port } = hostPort(address);
  const socket = net.connect(port, host);
  socket.on("error", () => undefined);
  let got = "";
  socket.on("data", (c: Buffer) => (got += c.toString("latin1")));
  const t0 = Date.now();
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - t0)));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  if (send !== undefined) socket.write(send);
  return { socket, closed, data: () => got };
}

const settled = <T>(p: Promise<T>, ms: number): Promise<T | "pending"> => Promise.race([p, sleep(ms).then(() => "pending" as const)]);

/** A raw HTTP/1.1 exchange on a new connection; resolves with the whole answer once the server closes or after `ms`. */
async function rawHttp(address: string, request: string, ms = 2000): Promise<string> {
  const p = await connect(address, request);
  await settled(p.closed, ms);
  p.socket.destroy();
  return p.data();
}

describe("HTTP connection limits", () => {
  let h: Harness | undefined;
  const open: net.Socket[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) s.destroy();
    await h?.close();
    h = undefined;
  });

  it("closes a connection that sends no byte within http.first_byte_timeout_ms, and an idle keep-alive one after http.idle_timeout_ms", async () => {
    // Prepare
    h = await startHarness({ http: { first_byte_timeout_ms: 300, idle_timeout_ms: 400 } });
    const addr = h.httpUrl.replace("http://", "");
    // Act
    const silent = await connect(addr);
    const talker = await connect(addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    const silentMs = await settled(silent.closed, 5000);
    const talkerMs = await settled(talker.closed, 5000);
    // Assess
    expect(silentMs).not.toBe("pending");
    expect(silentMs).toBeGreaterThanOrEqual(250);
    expect(talker.data()).toMatch(/^HTTP\/1\.1 200/);
    expect(talkerMs).not.toBe("pending");
    expect(talkerMs).toBeGreaterThanOrEqual(350);
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "http", reason: "first_byte_timeout" })).toBe(1);
  });

  it("at http.max_connections closes the longest-idle connection so /livez still answers on a new one", async () => {
    // Prepare
    h = await startHarness({ http: { max_connections: 4, first_byte_timeout_ms: 0 } });
    const addr = h.httpUrl.replace("http://", "");
    const silent: Probe[] = [];
    for (let i = 0; i < 4; i++) {
      silent.push(await connect(addr));
      open.push((silent[i] as Probe).socket);
    }
    await sleep(50);
    // Act
    const answer = await rawHttp(addr, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // Assess: the oldest silent one went.
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(await settled((silent[0] as Probe).closed, 2000)).not.toBe("pending");
    expect(await settled((silent[3] as Probe).closed, 100)).toBe("pending");
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "http", reason: "evicted" })).toBe(1);
  });

  it("when every connection is busy, takes a reserved one for /livez and /readyz only; a batch on it gets 503", async () => {
    // Prepare: 3 connections each in the middle of uploading a body.
    h = await startHarness({ http: { max_connections: 3, first_byte_timeout_ms: 0 } });
    const addr = h.httpUrl.replace("http://", "");
    for (let i = 0; i < 3; i++) {
      const p = await connect(addr, "POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{");
      open.push(p.socket);
    }
    await sleep(100);
    // Act
    const livez = await rawHttp(addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    const readyz = await rawHttp(addr, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    const line = `${ROUTE53_LINES[0] ?? ""}\n`;
    const batch = await rawHttp(addr, `POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(line)}\r\n\r\n${line}`);
    // Assess: answered, and closed after the one answer (rawHttp saw the close before its timeout).
    expect(livez).toMatch(/^HTTP\/1\.1 200/);
    expect(livez).toMatch(/\r\nConnection: close\r\n/i);
    expect(readyz).toMatch(/^HTTP\/1\.1 200/);
    expect(batch).toMatch(/^HTTP\/1\.1 503/);
    expect(batch).toContain("http.max_connections (3)");
    expect(await metric(h, "dnsgeo_open_connections", { transport: "http" })).toBe(3);
  });
});

describe("gRPC connection limits", () => {
  let h: Harness | undefined;
  const clients: grpc.Client[] = [];
  const open: net.Socket[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of open.splice(0)) s.destroy();
    await h?.close();
    h = undefined;
  });

  it("closes a connection that sends no byte within grpc.first_byte_timeout_ms, and one with no call open after grpc.idle_timeout_ms", async () => {
    // Prepare
    h = await startHarness({ grpc: { first_byte_timeout_ms: 300, idle_timeout_ms: 400 } });
    // Act
    const silent = await connect(h.grpcAddress);
    const session = http2.connect(`http://${h.grpcAddress}`);
    session.on("error", () => undefined);
    const goaway = new Promise<number>((resolve) => session.once("goaway", () => resolve(Date.now())));
    const s = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
    s.end(Buffer.from([0, 0, 0, 0, 0]));
    s.resume();
    await new Promise<void>((resolve) => s.on("close", () => resolve()));
    const callDone = Date.now();
    const silentMs = await settled(silent.closed, 5000);
    const goawayAt = await settled(goaway, 5000);
    session.destroy();
    // Assess
    expect(silentMs).not.toBe("pending");
    expect(silentMs).toBeGreaterThanOrEqual(250);
    expect(goawayAt).not.toBe("pending");
    expect((goawayAt as number) - callDone).toBeGreaterThanOrEqual(300);
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "grpc", reason: "first_byte_timeout" })).toBe(1);
  });

  it("at grpc.max_connections closes a silent connection to make room, and refuses a new one when every connection has spoken", async () => {
    // Prepare
    h = await startHarness({ grpc: { max_connections: 2, first_byte_timeout_ms: 0 } });
    const silent = await connect(h.grpcAddress);
    open.push(silent.socket);
    await sleep(50);
    const a = enrichmentClient(h.grpcAddress);
    const b = enrichmentClient(h.grpcAddress, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    clients.push(a, b);
    // Act
    const first = await unary<EnrichResponse>(a, "Enrich", { records: [ROUTE53_LINES[0]] });
    const second = await unary<EnrichResponse>(b, "Enrich", { records: [ROUTE53_LINES[0]] });
    const third = await connect(h.grpcAddress);
    const thirdMs = await settled(third.closed, 2000);
    // Assess
    expect(first.records).toHaveLength(1);
    expect(second.records).toHaveLength(1);
    expect(await settled(silent.closed, 1000)).not.toBe("pending");
    expect(thirdMs).not.toBe("pending");
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "grpc", reason: "evicted" })).toBe(1);
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "grpc", reason: "max_connections" })).toBe(1);
    expect(await metric(h, "dnsgeo_open_connections", { transport: "grpc" })).toBe(2);
  });
});
