/**
 * gRPC against careless and hostile clients: answers nobody reads, stream and Watch
 * floods, malformed protobuf. Real grpc-js server and clients (raw HTTP/2 where a
 * client library would hide what is tested), small counts.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";
import { enrichmentClient, healthClient, unary, type AnyClient, type EnrichResponse } from "./grpc-client.js";
import { loadEnrichmentDefinition } from "../../../src/transport/grpc-server.js";
import { enrichRequest, grpcFrame } from "../../helpers/grpc-wire.js";

/** A request of about `kb` KB: Route 53 sample lines repeated. */
function records(kb: number): string[] {
  const out: string[] = [];
  let n = 0;
  for (let i = 0; n < kb * 1024; i++) {
    const line = ROUTE53_LINES[i % ROUTE53_LINES.length] as string;
    out.push(line);
    n += line.length;
  }
  return out;
}

async function metric(h: Harness, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = h.app.metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((a, v) => a + v.value, 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(20);
  }
}

/** Raw bytes in, raw bytes out: for messages a generated client could not write. */
function rawUnary(client: grpc.Client, path: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      (e, v) => (e ? reject(e) : resolve(v as Buffer)),
    );
  });
}

describe("gRPC backpressure", () => {
  let h: Harness | undefined;
  const clients: grpc.Client[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await h?.close();
    h = undefined;
  });

  it("an EnrichStream whose client does not read stops being read: the server holds one answer, and every answer arrives once the client reads", async () => {
    // Prepare
    h = await startHarness();
    const total = 120;
    // Act: write every request without reading any answer.
    const { session, stream: s, sent } = unreadStream(h.grpcAddress, total);
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) > 0);
    let servedWhileStuck = -1;
    await until(async () => {
      const before = await countServed(h as Harness);
      await sleep(500);
      servedWhileStuck = await countServed(h as Harness);
      return servedWhileStuck === before;
    }, 15_000);
    await sleep(500);
    const servedLater = await countServed(h);
    const unsent = await metric(h, "dnsgeo_grpc_unsent_answer_bytes");
    const taken = sent();
    // Assess: a small, stable number of requests was read, and no more were taken off the
    // connection than that (the rest waits in the client); one answer waits.
    expect(servedWhileStuck).toBeLessThan(3);
    expect(taken).toBeLessThan(4);
    expect(servedLater).toBe(servedWhileStuck);
    expect(unsent).toBeGreaterThan(0);
    expect(unsent).toBeLessThan(4 * 130 * 1024);
    // Act: now read.
    const messages = readMessages(s);
    s.resume();
    const ids = (await messages).map((m) => (decodeResponse(m) as { id: string }).id);
    // Assess: nothing lost, in order, and nothing left waiting.
    expect(ids).toEqual(Array.from({ length: total }, (_, i) => `r${i}`));
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) === 0);
    session.close();
  });

  it("past grpc.max_unsent_answer_bytes new calls get RESOURCE_EXHAUSTED at once; they are served again once the unread stream goes", async () => {
    // Prepare: a cap below one answer, so one unread answer reaches it.
    h = await startHarness({ grpc: { max_unsent_answer_bytes: 64 * 1024 } });
    const reader = enrichmentClient(h.grpcAddress);
    clients.push(reader);
    const { session, stream } = unreadStream(h.grpcAddress, 20);
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) >= 64 * 1024);
    await sleep(300);
    // Act
    const t0 = Date.now();
    const refused = await unary(reader, "Enrich", { records: [ROUTE53_LINES[0]] }).catch((e: grpc.ServiceError) => e);
    const refusedMs = Date.now() - t0;
    stream.close(http2.constants.NGHTTP2_CANCEL);
    session.close();
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) === 0);
    const served = await unary<EnrichResponse>(reader, "Enrich", { records: [ROUTE53_LINES[0]] });
    // Assess
    expect((refused as grpc.ServiceError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refusedMs).toBeLessThan(2000);
    expect(await metric(h, "dnsgeo_requests_refused_total", { transport: "grpc", reason: "unsent_answers" })).toBeGreaterThan(0);
    expect(served.records).toHaveLength(1);
  });

  it("a connection past grpc.max_unsent_answer_bytes_per_connection gets RESOURCE_EXHAUSTED for its new calls; other connections are served", async () => {
    // Prepare: a per-connection cap below one answer, the total cap left at its default.
    h = await startHarness({ grpc: { max_unsent_answer_bytes_per_connection: 64 * 1024 } });
    const other = enrichmentClient(h.grpcAddress);
    clients.push(other);
    const { session, stream } = unreadStream(h.grpcAddress, 20);
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) >= 64 * 1024);
    await sleep(300);
    // Act: one more call on the connection that does not read, one on another connection.
    const s = session.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/Enrich", "content-type": "application/grpc", te: "trailers" });
    const sameConnection = new Promise<string | undefined>((resolve) => {
      s.on("response", (hd) => (hd["grpc-status"] !== undefined ? resolve(String(hd["grpc-status"])) : undefined));
      s.on("trailers", (t) => resolve(String(t["grpc-status"])));
      s.on("error", () => resolve(undefined));
      s.on("close", () => resolve(undefined));
    });
    s.resume();
    s.end(frameEnrichRequest(records(1)));
    const status = await sameConnection;
    const served = await unary<EnrichResponse>(other, "Enrich", { records: [ROUTE53_LINES[0]] });
    stream.close(http2.constants.NGHTTP2_CANCEL);
    session.close();
    // Assess
    expect(status).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    expect(served.records).toHaveLength(1);
  });

  it("unread unary answers on one connection are bounded by grpc.max_concurrent_streams, and a connection that stops reading is closed after grpc.send_timeout_ms", async () => {
    // Prepare
    h = await startHarness({ grpc: { max_concurrent_streams: 4, send_timeout_ms: 400 } });
    const session = http2.connect(`http://${h.grpcAddress}`);
    session.on("error", () => undefined);
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    const maxStreams = session.remoteSettings.maxConcurrentStreams;
    // Act: unary Enrich calls whose answers are never read (the HTTP/2 stream stays paused).
    const body = frameEnrichRequest(records(130));
    for (let i = 0; i < 12; i++) {
      const s = session.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/Enrich", "content-type": "application/grpc", te: "trailers" });
      s.on("error", () => undefined);
      s.pause();
      s.end(body);
    }
    const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
    await closed;
    // Assess
    expect(maxStreams).toBe(4);
    expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "grpc", reason: "send_timeout" })).toBeGreaterThan(0);
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_unsent_answer_bytes")) === 0);
    // The server still serves others.
    const c = enrichmentClient(h.grpcAddress);
    clients.push(c);
    expect((await unary<EnrichResponse>(c, "Enrich", { records: [ROUTE53_LINES[0]] })).records).toHaveLength(1);
  });
});

/**
 * An EnrichStream that sends `total` requests of 130 KB and does not read: raw HTTP/2 with
 * the response stream paused, because grpc-js's client keeps reading into memory of its
 * own when the application does not.
 */
function unreadStream(address: string, total: number): { session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream; sent: () => number } {
  // Room for every request in the client's own send buffer (the default 10 MB would refuse them).
  const session = http2.connect(`http://${address}`, { maxSessionMemory: 256 });
  session.on("error", () => undefined);
  const stream = session.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/EnrichStream", "content-type": "application/grpc", te: "trailers" });
  stream.on("error", () => undefined);
  stream.pause();
  const batch = records(130);
  let sent = 0;
  // One request at a time, as a client honouring backpressure writes: the next goes once
  // the last left the client's buffer, which HTTP/2 flow control allows only as the server reads.
  void (async () => {
    for (let i = 0; i < total; i++) {
      if (!stream.write(frameEnrichRequest(batch, `r${i}`))) await new Promise((r) => stream.once("drain", r));
      sent++;
    }
    stream.end();
  })().catch(() => undefined);
  return { session, stream, sent: () => sent };
}

/** Served enrich_stream requests so far (histogram count). */
async function countServed(h: Harness): Promise<number> {
  const m = h.app.metrics.registry.getSingleMetric("dnsgeo_request_duration_seconds");
  const { values } = await (m as NonNullable<typeof m>).get();
  return values.filter((v) => (v as { metricName?: string }).metricName === "dnsgeo_request_duration_seconds_count" && (v.labels as Record<string, unknown>).route === "enrich_stream").reduce((a, v) => a + v.value, 0);
}

/** An EnrichRequest in a gRPC frame (records, and the id when given). */
function frameEnrichRequest(recs: string[], id?: string): Buffer {
  return grpcFrame(enrichRequest(recs, id));
}

const decodeResponse = (loadEnrichmentDefinition()["dnsgeo.v1.Enrichment"] as unknown as Record<string, { responseDeserialize(b: Buffer): unknown }>).EnrichStream?.responseDeserialize as (b: Buffer) => unknown;

/** The gRPC messages of a response stream, once it ends. */
function readMessages(s: http2.ClientHttp2Stream): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: Buffer[] = [];
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const n = buf.readUInt32BE(1);
        out.push(buf.subarray(5, 5 + n));
        buf = buf.subarray(5 + n);
      }
    });
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}


describe("gRPC health Watch cap", () => {
  let h: Harness | undefined;
  const clients: AnyClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await h?.close();
    h = undefined;
  });

  it("refuses Watch streams past grpc.max_watch_streams with RESOURCE_EXHAUSTED, even without a token when ops are open, and takes new ones when one goes", async () => {
    // Prepare
    h = await startHarness({ auth: { token: "secret-token-123" }, grpc: { max_watch_streams: 3 } });
    const hc = healthClient(h.grpcAddress);
    clients.push(hc);
    const open = (service: string): { call: grpc.ClientReadableStream<{ status: string }>; first: Promise<string>; end: Promise<grpc.StatusObject> } => {
      const call = hc.Watch({ service }) as grpc.ClientReadableStream<{ status: string }>;
      call.on("error", () => undefined);
      const first = new Promise<string>((resolve) => call.once("data", (m: { status: string }) => resolve(m.status)));
      const end = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      return { call, first, end };
    };
    // Act
    const a = open("");
    const b = open("dnsgeo.v1.Enrichment");
    const c = open("no.such.Service");
    const firsts = await Promise.all([a.first, b.first, c.first]);
    const d = open("");
    const refused = await d.end;
    a.call.cancel();
    await until(async () => (await metric(h as Harness, "dnsgeo_grpc_watch_streams")) === 2);
    const e = open("");
    const again = await e.first;
    // Assess
    expect(firsts).toEqual(["SERVING", "SERVING", "SERVICE_UNKNOWN"]);
    expect(refused.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain("grpc.max_watch_streams");
    expect(again).toBe("SERVING");
    expect(await metric(h, "dnsgeo_requests_refused_total", { transport: "grpc", reason: "watch_streams" })).toBe(1);
    for (const s of [b, c, e]) s.call.cancel();
  });
});

describe("gRPC Watch flood", () => {
  it("closes a connection that keeps opening Watch streams past the cap (after 16 refusals), so a flood costs the client a connection per 16 calls", async () => {
    // Prepare
    const h = await startHarness({ grpc: { max_watch_streams: 1 } });
    try {
      const session = http2.connect(`http://${h.grpcAddress}`);
      session.on("error", () => undefined);
      const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
      const watch = (): Promise<string | undefined> =>
        new Promise((resolve) => {
          const s = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
          s.on("error", () => resolve(undefined));
          s.on("close", () => resolve(undefined));
          s.on("response", (hd) => (hd["grpc-status"] !== undefined ? resolve(String(hd["grpc-status"])) : undefined));
          s.on("data", () => resolve("open"));
          s.end(Buffer.alloc(5));
        });
      // Act
      const first = await watch();
      const statuses: Array<string | undefined> = [];
      for (let i = 0; i < 16; i++) statuses.push(await watch());
      await closed;
      // Assess
      expect(first).toBe("open");
      expect(statuses.slice(0, 15)).toEqual(Array.from({ length: 15 }, () => String(grpc.status.RESOURCE_EXHAUSTED)));
      expect(await metric(h, "dnsgeo_connections_closed_total", { transport: "grpc", reason: "watch_refused" })).toBe(1);
      await until(async () => (await metric(h, "dnsgeo_grpc_watch_streams")) === 0);
    } finally {
      await h.close();
    }
  });
});

describe("gRPC malformed protobuf", () => {
  let h: Harness;
  let client: grpc.Client;
  afterEach(async () => {
    client.close();
    await h.close();
  });

  it("answers INVALID_ARGUMENT saying what is wrong, for Enrich, EnrichStream and Lookup; unknown fields are skipped", async () => {
    // Prepare
    h = await startHarness();
    client = new grpc.Client(h.grpcAddress, grpc.credentials.createInsecure());
    const cases: Array<[string, Buffer, RegExp]> = [
      ["length past the end", Buffer.from([0x0a, 0x10, 0x61, 0x62]), /length 16 runs past the end/],
      ["truncated varint", Buffer.from([0x0a, 0x80]), /truncated varint/],
      ["wrong wire type", Buffer.from([0x08, 0x01]), /records \(1\) has wire type 0/],
      ["invalid UTF-8", Buffer.from([0x0a, 0x02, 0xff, 0xfe]), /records\[0\] is not valid UTF-8/],
      ["field number 0", Buffer.from([0x02, 0x00]), /field number 0/],
      ["group wire type", Buffer.from([0x2b]), /wire type 3 is not allowed/],
    ];
    // Act + Assess
    for (const [name, bytes, message] of cases) {
      const err = (await rawUnary(client, "/dnsgeo.v1.Enrichment/Enrich", bytes).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
      expect(err.code, name).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details, name).toMatch(/^malformed dnsgeo\.v1\.EnrichRequest: /);
      expect(err.details, name).toMatch(message);
      expect(err.metadata.get("dnsgeo-error-code")[0], name).toBe("DNSGEO_BAD_REQUEST");
    }
    const lookupErr = (await rawUnary(client, "/dnsgeo.v1.Enrichment/Lookup", Buffer.from([0x0a, 0x05, 0x31])).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(lookupErr.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(lookupErr.details).toMatch(/malformed dnsgeo\.v1\.LookupRequest: ips\[0\]: length 5 runs past/);
    // A field this version does not know (number 9, varint) before records[0] = "x": skipped, as protobuf wants.
    const ok = await rawUnary(client, "/dnsgeo.v1.Enrichment/Enrich", Buffer.from([0x48, 0x05, 0x0a, 0x01, 0x78]));
    expect(ok.length).toBeGreaterThan(0);
    const ec = enrichmentClient(h.grpcAddress);
    try {
      const stream = ec.makeBidiStreamRequest<Buffer, Buffer>("/dnsgeo.v1.Enrichment/EnrichStream", (b: Buffer) => b, (b: Buffer) => b);
      const st = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
      stream.on("error", () => undefined);
      stream.on("data", () => undefined);
      stream.write(Buffer.from([0x0a, 0x01, 0x78]));
      stream.write(Buffer.from([0x0a, 0x09]));
      const status = await st;
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.details).toMatch(/records\[0\]: length 9 runs past the end/);
    } finally {
      ec.close();
    }
  });
});
