import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Agent, request } from "undici";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";
import { deadLetterPath } from "../../../src/config.js";
import { readDeadLetters } from "../../../src/transport/dead-letter.js";

/** A next hop that records the batches it accepted; `mode` sets how it answers. */
interface Receiver {
  url: string;
  mode: "ok" | "slow" | "500" | "400" | "301";
  /** Marker values (`batch` field) of every record in every batch answered 2xx. */
  accepted: Set<string>;
  requests: Array<{ headers: http.IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: "", mode: "ok", accepted: new Set(), requests: [], close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      r.requests.push({ headers: req.headers, body });
      // As Fluent Bit in_http: an empty payload is refused.
      if (body === "") return void res.writeHead(400, { "content-type": "text/plain" }).end("no payload found");
      const mode = r.mode;
      if (mode === "slow") {
        setTimeout(() => res.writeHead(201).end(), 1500).unref();
        return;
      }
      if (mode === "500") return void res.writeHead(500).end("boom");
      if (mode === "301") return void res.writeHead(301).end();
      if (mode === "400") return void res.writeHead(400, { "content-type": "text/plain" }).end("invalid 'Content-Type'");
      for (const line of body.split("\n")) {
        if (line.trim() === "") continue;
        const rec = JSON.parse(line) as { batch?: string };
        if (rec.batch) r.accepted.add(rec.batch);
      }
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dns/enriched`;
  r.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

const agent = new Agent({ connections: 8 });

function batch(id: string): string {
  return ROUTE53_LINES.map((l) => JSON.stringify(Object.assign(JSON.parse(l) as object, { batch: id }))).join("\n") + "\n";
}

async function send(url: string, body: string, headers: Record<string, string> = {}) {
  const res = await request(`${url}/v1/forward`, { method: "POST", body, headers: Object.assign({ "content-type": "application/x-ndjson" }, headers), dispatcher: agent });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

describe("POST /v1/forward", () => {
  let rcv: Receiver;
  let h: Harness;
  beforeAll(async () => {
    rcv = await startReceiver();
    h = await startHarness({ forward: { url: rcv.url, content_type: "application/json", timeout_ms: 500 }, http: { retry_after_s: 2 } });
  });
  afterAll(async () => {
    await h.close();
    await rcv.close();
  });
  afterEach(() => {
    rcv.mode = "ok";
  });

  it("acknowledges only after the next hop took the batch, sending the configured Content-Type", async () => {
    // Act
    const res = await send(h.httpUrl, batch("b-up"));
    // Assess
    expect(res.status).toBe(200);
    expect(rcv.accepted.has("b-up")).toBe(true);
    const last = rcv.requests.at(-1);
    expect(last?.headers["content-type"]).toBe("application/json");
    const lines = (last?.body ?? "").split("\n").filter((l) => l !== "");
    expect(lines).toHaveLength(ROUTE53_LINES.length);
    expect(JSON.parse(lines[0] as string)).toHaveProperty("dnsgeo");
  });

  it("passes on every record of a batch large enough to be enriched in slices (1 MiB or more)", async () => {
    // Arrange: ~2 MiB of NDJSON, each record marked with its own id.
    const lines: string[] = [];
    let bytes = 0;
    for (let i = 0; bytes < 2 * 1024 * 1024; i++) {
      const line = JSON.stringify(Object.assign(JSON.parse(ROUTE53_LINES[i % ROUTE53_LINES.length] as string) as object, { batch: `big-${i}` }));
      lines.push(line);
      bytes += line.length + 1;
    }
    // Act
    const res = await send(h.httpUrl, lines.join("\n") + "\n");
    // Assess
    expect(res.status).toBe(200);
    const missing = lines.map((_, i) => `big-${i}`).filter((id) => !rcv.accepted.has(id));
    expect(missing).toEqual([]);
  });

  it("shipper view: every batch is acknowledged and at the receiver, or refused with a retryable status", async () => {
    // Prepare: the receiver cycles through up, slow (past forward.timeout_ms), 500
    const modes: Array<Receiver["mode"]> = ["ok", "slow", "500", "ok", "500", "slow", "ok"];
    const outcomes: Array<{ id: string; status: number; retryAfter: unknown }> = [];
    // Act
    for (let i = 0; i < modes.length; i++) {
      rcv.mode = modes[i] as Receiver["mode"];
      const id = `b-mix-${i}`;
      const res = await send(h.httpUrl, batch(id));
      outcomes.push({ id, status: res.status, retryAfter: res.headers["retry-after"] });
    }
    // Assess
    for (const o of outcomes) {
      if (o.status >= 200 && o.status < 300) expect(rcv.accepted.has(o.id)).toBe(true);
      else {
        expect([429, 503]).toContain(o.status);
        expect(o.retryAfter).toBe("2");
      }
    }
    expect(outcomes.filter((o) => o.status === 200)).toHaveLength(3);
    expect(outcomes.filter((o) => o.status === 503)).toHaveLength(4);
  });

  it("writes records the next hop refuses with a 4xx to the dead-letter file and acknowledges the batch", async () => {
    // Prepare
    rcv.mode = "400";
    // Act
    const res = await send(h.httpUrl, batch("b-400"));
    // Assess: nothing reached the next hop, every record is in the dead-letter file with the reason
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ records: ROUTE53_LINES.length, delivered: 0, dead_lettered: ROUTE53_LINES.length });
    expect(rcv.accepted.has("b-400")).toBe(false);
    const { records } = await readDeadLetters(deadLetterPath(h.app.config));
    const mine = records.filter((r) => (JSON.parse(r.text) as { batch?: string }).batch === "b-400");
    expect(mine).toHaveLength(ROUTE53_LINES.length);
    expect(mine[0]?.reason.status).toBe(400);
    expect(mine[0]?.reason.answer).toContain("invalid 'Content-Type'");
    expect(JSON.parse(mine[0]?.text ?? "{}")).toHaveProperty("dnsgeo");
  });

  it("answers 503 + Retry-After, not the redirect, when the next hop answers 301", async () => {
    // Prepare
    rcv.mode = "301";
    // Act
    const res = await send(h.httpUrl, batch("b-301"));
    // Assess
    expect(res.status).toBe(503);
    expect(res.headers["retry-after"]).toBe("2");
    expect(JSON.parse(res.text)).toMatchObject({ code: "DNSGEO_NEXT_HOP_UNAVAILABLE", next_hop_status: 301 });
  });

  it("answers a Firehose request with {requestId, timestamp} after the next hop took it", async () => {
    // Prepare
    const data = Buffer.from(ROUTE53_LINES.map((l) => JSON.stringify(Object.assign(JSON.parse(l) as object, { batch: "fh-1" }))).join("\n")).toString("base64");
    const body = JSON.stringify({ requestId: "req-123", timestamp: 1715677923000, records: [{ data }] });
    // Act
    const res = await send(h.httpUrl, body, { "content-type": "application/json", "x-amz-firehose-request-id": "req-123" });
    // Assess
    expect(res.status).toBe(200);
    const ack = JSON.parse(res.text) as { requestId: string; timestamp: number };
    expect(ack.requestId).toBe("req-123");
    expect(typeof ack.timestamp).toBe("number");
    expect(rcv.accepted.has("fh-1")).toBe(true);
  });

  it("acknowledges a batch that enriches to no records without calling the next hop", async () => {
    // Prepare: a CloudWatch connectivity check, an empty NDJSON body, a Firehose request without records
    const control = JSON.stringify({ messageType: "CONTROL_MESSAGE", owner: "CloudwatchLogs", logGroup: "", logStream: "", subscriptionFilters: [], logEvents: [{ id: "", timestamp: 1715677923000, message: "CWL CONTROL MESSAGE: Checking health of destination Firehose." }] });
    const firehose = JSON.stringify({ requestId: "req-empty", timestamp: 1715677923000, records: [] });
    const before = rcv.requests.length;
    // Act
    const ctl = await send(h.httpUrl, control, { "content-type": "application/json" });
    const empty = await send(h.httpUrl, "");
    const fh = await send(h.httpUrl, firehose, { "content-type": "application/json", "x-amz-firehose-request-id": "req-empty" });
    // Assess
    expect(ctl.status).toBe(200);
    expect(JSON.parse(ctl.text)).toEqual({ records: 0 });
    expect(empty.status).toBe(200);
    expect(fh.status).toBe(200);
    expect(JSON.parse(fh.text)).toMatchObject({ requestId: "req-empty" });
    expect(rcv.requests.length).toBe(before);
  });

  it("refuses with 503 + Retry-After when the next hop is down", async () => {
    // Prepare
    const down = await startReceiver();
    const url = down.url;
    await down.close();
    const h2 = await startHarness({ forward: { url, timeout_ms: 500 } });
    try {
      // Act
      const res = await send(h2.httpUrl, batch("b-down"));
      // Assess
      expect(res.status).toBe(503);
      expect(res.headers["retry-after"]).toBe("1");
      expect(JSON.parse(res.text).code).toBe("DNSGEO_NEXT_HOP_UNAVAILABLE");
    } finally {
      await h2.close();
    }
  });
});
