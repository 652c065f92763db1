import { afterEach, describe, expect, it } from "vitest";
import * as net from "node:net";
import { loadConfig } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import type { Enricher, EnrichOutput } from "../../../src/pipeline/enrich.js";
import type { Decoded } from "../../../src/pipeline/types.js";
import { createHttpServer, negotiateEncoding, type HttpTransport } from "../../../src/transport/http-server.js";
import { InflightLimiter } from "../../../src/transport/limits.js";
import type { TransportApp } from "../../../src/transport/transport-app.js";

describe("negotiateEncoding", () => {
  it("picks the best supported coding by q-value, then by preference", () => {
    expect(negotiateEncoding(undefined)).toBe("none");
    expect(negotiateEncoding("")).toBe("none");
    expect(negotiateEncoding("br")).toBe("none");
    expect(negotiateEncoding("gzip, deflate")).toBe("gzip");
    expect(negotiateEncoding("deflate, gzip;q=0.5")).toBe("deflate");
    expect(negotiateEncoding("snappy")).toBe("snappy");
    expect(negotiateEncoding("gzip;q=0, deflate;q=0.1")).toBe("deflate");
    expect(negotiateEncoding("*")).toBe("none");
  });
});

/** An enricher whose calls wait until the test opens the gate; it counts how many run at once. */
function gatedEnricher(): { enricher: Enricher; running: () => number; maxRunning: () => number; started: () => number; open: () => void; whenStarted: (n: number) => Promise<void> } {
  let running = 0;
  let max = 0;
  let started = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const enricher = {
    async enrichDecoded(decoded: Decoded): Promise<EnrichOutput> {
      running++;
      started++;
      max = Math.max(max, running);
      for (const w of waiters.filter((x) => started >= x.n)) w.resolve();
      await gate;
      running--;
      return { framing: decoded.framing, items: [], counts: {} as EnrichOutput["counts"], lookedUp: 0 };
    },
  } as unknown as Enricher;
  return {
    enricher,
    running: () => running,
    maxRunning: () => max,
    started: () => started,
    open,
    whenStarted: (n) => (started >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
  };
}

/**
 * Posts a whole body on a raw socket, then hangs up. With `answerOr`, first waits for
 * the answer's first bytes, or for `answerOr` (then resolves "admitted": the request got in).
 */
async function postAndHangUp(port: number, answerOr?: Promise<unknown>): Promise<string> {
  const sock = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  const body = '{"a":1}\n';
  sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  let answer = "";
  if (answerOr) {
    answer = await Promise.race([
      new Promise<string>((resolve) => sock.once("data", (d: Buffer) => resolve(d.toString("latin1")))),
      answerOr.then(() => "admitted"),
    ]);
  }
  sock.destroy();
  return answer;
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe("HTTP in-flight slots and client hang-ups", () => {
  let server: HttpTransport | undefined;
  afterEach(async () => {
    await server?.close(1000);
    server = undefined;
  });

  function start(enricher: Enricher, limiter: InflightLimiter): HttpTransport {
    const config = loadConfig({ overrides: { http: { host: "127.0.0.1", port: 0, overload_turn_ms: 0, max_inflight_requests: limiter.max } } });
    const app: TransportApp = { config, logger: silentLogger(), metrics: createMetrics(), enricher, lookupIps: async () => [], ready: () => true };
    return createHttpServer({ app, limiter });
  }

  it("keeps a slot taken while the enrichment of a hung-up client still runs, and close() waits for it", async () => {
    // Prepare: two slots, two clients that post and hang up while their enrichment waits
    const g = gatedEnricher();
    const limiter = new InflightLimiter(2);
    server = start(g.enricher, limiter);
    const port = Number((await server.listen()).split(":").pop());
    await postAndHangUp(port);
    await postAndHangUp(port);
    await g.whenStarted(2);
    // Act: a third and fourth client while the first two enrichments still run
    const third = await postAndHangUp(port, g.whenStarted(3));
    const fourth = await postAndHangUp(port, g.whenStarted(4));
    let closeDone = false;
    const closing = server.close(5000).then(() => (closeDone = true));
    await turns(20);
    const closedEarly = closeDone;
    const runningAtClose = g.running();
    g.open();
    await closing;
    // Assess
    expect(third).toMatch(/^HTTP\/1\.1 503 /);
    expect(fourth).toMatch(/^HTTP\/1\.1 503 /);
    expect(g.maxRunning()).toBe(2);
    expect(g.started()).toBe(2);
    expect(runningAtClose).toBe(2);
    expect(closedEarly).toBe(false);
    expect(limiter.inflight).toBe(0);
  });
});

/** Sends raw bytes and resolves with everything the server answered until it closed the connection. */
async function rawExchange(port: number, bytes: string, onServerSocket?: () => void): Promise<string> {
  const sock = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  const chunks: Buffer[] = [];
  sock.on("data", (d: Buffer) => chunks.push(d));
  const ended = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  sock.write(bytes);
  onServerSocket?.();
  await ended;
  return Buffer.concat(chunks).toString("latin1");
}

describe("HTTP client errors", () => {
  let server: HttpTransport | undefined;
  afterEach(async () => {
    await server?.close(1000);
    server = undefined;
  });

  function start(): HttpTransport {
    const config = loadConfig({ overrides: { http: { host: "127.0.0.1", port: 0, overload_turn_ms: 0 } } });
    const app: TransportApp = { config, logger: silentLogger(), metrics: createMetrics(), enricher: gatedEnricher().enricher, lookupIps: async () => [], ready: () => true };
    return createHttpServer({ app, limiter: new InflightLimiter(4) });
  }

  it("answers 408 to headers that never end, by node's own headers timeout (its checks run though dnsgeo's listener hands it the connections)", async () => {
    // Prepare
    server = start();
    const http = server.server as typeof server.server & { connectionsCheckingInterval: number };
    http.headersTimeout = 300;
    http.connectionsCheckingInterval = 50;
    const port = Number((await server.listen()).split(":").pop());
    // Act
    const started = performance.now();
    const answer = await rawExchange(port, "GET /livez HTTP/1.1\r\nHost: x\r\n");
    // Assess
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });

  it("hands a connection to node's HTTP server only at its first byte, so a silent one costs no parser", async () => {
    // Prepare
    server = start();
    let handedOver = 0;
    server.server.on("connection", () => handedOver++);
    const port = Number((await server.listen()).split(":").pop());
    const sock = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    // Act
    await new Promise((r) => setTimeout(r, 100));
    const beforeByte = handedOver;
    const answer = new Promise<string>((resolve) => sock.once("data", (d: Buffer) => resolve(d.toString("latin1"))));
    sock.write("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    const text = await answer;
    sock.destroy();
    // Assess
    expect(beforeByte).toBe(0);
    expect(handedOver).toBe(1);
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("answers 431 to oversized headers, 408 to a request timeout and 400 to a malformed request, as node does", async () => {
    // Prepare
    server = start();
    const port = Number((await server.listen()).split(":").pop());
    const timeoutError = Object.assign(new Error("Request timeout"), { code: "ERR_HTTP_REQUEST_TIMEOUT" });
    // Act
    const overflow = await rawExchange(port, `POST /v1/enrich HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
    // Node emits this error itself once http's request/headers timeout runs out; the timers are too long to wait for here.
    const accepted = new Promise<net.Socket>((resolve) => server?.server.once("connection", resolve));
    const timedOut = await rawExchange(port, "POST /v1/enrich HTTP/1.1\r\nHost: x\r\n", () => {
      void accepted.then((s) => setImmediate(() => server?.server.emit("clientError", timeoutError, s)));
    });
    const malformed = await rawExchange(port, "NOT A REQUEST\r\n\r\n");
    // Assess
    expect(overflow).toMatch(/^HTTP\/1\.1 431 /);
    expect(timedOut).toMatch(/^HTTP\/1\.1 408 /);
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /);
  });
});
