/**
 * OTLP logs in and out over real HTTP and gRPC: POST /v1/logs (protobuf, JSON, gzip) and
 * LogsService/Export, each record enriched in the log record itself and sent to a next
 * OTLP hop (a small OTLP/HTTP receiver here; the real Fluent Bit in
 * test/integration/fluent-bit/otlp.test.ts), success only after the next hop's success.
 */
import * as http from "node:http";
import * as net from "node:net";
import { performance } from "node:perf_hooks";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { decodeLogsRequest, decodeLogsResponse, encodeLogsRequest, encodeLogsResponse, LOGS_EXPORT_PATH, type AnyValue, type ExportLogsRequest, type ExportLogsResponse, type KeyValue } from "../../../src/transport/otlp-proto.js";
import { anyToJs, jsToAny, kvToObject } from "../../../src/transport/otlp-logs.js";
import { startHarness, ROUTE53_LINES, type Harness } from "./harness.js";
import { lenField } from "../../helpers/grpc-wire.js";

type Obj = Record<string, unknown>;

/**
 * What Fluent Bit 5.1.1's `opentelemetry` output sent for one tail record parsed as JSON
 * (`{"rid":"a1","query_name":"example.com","answers":[{"Rdata":"93.184.216.34","Type":"A"}]}`):
 * the body is a kvlist of the record's fields. Captured with a plain HTTP listener.
 */
const FLUENT_BIT_CAPTURE = Buffer.from(
  "0a790a0012750a0012710909a82d614cb6ee182a6632640a0b0a0372696412040a0261310a1b0a0a71756572795f6e616d65120d0a0b6578616d706c652e636f6d0a380a07616e7377657273122d2a2b0a2932270a180a055264617461120f0a0d39332e3138342e3231362e33340a0b0a045479706512030a0141",
  "hex",
);

/** A next OTLP hop: decodes what it gets; answers per `mode`. */
interface NextHop {
  url: string;
  requests: ExportLogsRequest[];
  mode: "ok" | "503" | "partial" | "400";
  /** Answers for the next requests, before `mode` applies again. */
  queue: Array<"ok" | "503">;
  close(): Promise<void>;
}

async function startNextHop(): Promise<NextHop> {
  const hop: NextHop = {
    url: "",
    requests: [],
    mode: "ok",
    queue: [],
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const mode = hop.queue.shift() ?? hop.mode;
      if (mode === "503") {
        res.writeHead(503).end("busy");
        return;
      }
      if (mode === "400") {
        res.writeHead(400).end("bad record");
        return;
      }
      expect(req.headers["content-type"]).toBe("application/x-protobuf");
      hop.requests.push(decodeLogsRequest(Buffer.concat(chunks)));
      const answer: ExportLogsResponse = mode === "partial" ? { partialSuccess: { rejectedLogRecords: 1, errorMessage: "one was too old" } } : {};
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end(encodeLogsResponse(answer));
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  hop.url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  return hop;
}

const kv = (key: string, value: AnyValue): KeyValue => ({ key, value });

/** Protobuf bytes of a request whose one log body is an array in an array ... `depth` deep, built as the wire format writes it. */
function deeplyNested(depth: number): Buffer {
  let v: Buffer = Buffer.alloc(0);
  // AnyValue.array_value (5) holding ArrayValue.values (1).
  for (let i = 0; i < depth; i++) v = lenField(0x2a, lenField(0x0a, v));
  // LogRecord.body (5) in ScopeLogs.log_records (2) in ResourceLogs.scope_logs (2) in the request's resource_logs (1).
  return lenField(0x0a, lenField(0x12, lenField(0x12, lenField(0x2a, v))));
}

/** A request of one log record per body. */
function request(bodies: AnyValue[], attrs: KeyValue[][] = []): ExportLogsRequest {
  return {
    resourceLogs: [
      {
        resource: { attributes: [kv("service.name", { stringValue: "dns" })] },
        scopeLogs: [{ scope: { name: "t" }, logRecords: bodies.map((b, i) => ({ timeUnixNano: 1_700_000_000_000_000_000 + i, severityNumber: 9, body: b, attributes: attrs[i] ?? [] })) }],
      },
    ],
  };
}

/** Records the next hop got, each as a JS object of its body (or its attributes when asked). */
function received(hop: NextHop): Array<{ body: unknown; attrs: Obj }> {
  const out: Array<{ body: unknown; attrs: Obj }> = [];
  for (const r of hop.requests) for (const rl of r.resourceLogs ?? []) for (const sl of rl.scopeLogs ?? []) for (const lr of sl.logRecords ?? []) out.push({ body: anyToJs(lr.body), attrs: kvToObject(lr.attributes ?? []) });
  return out;
}

async function post(url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { method: "POST", body, headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

const PB = { "content-type": "application/x-protobuf" };

let h: Harness | undefined;
let hop: NextHop | undefined;
afterEach(async () => {
  await h?.close();
  await hop?.close();
  h = undefined;
  hop = undefined;
});

async function start(otlp: Obj = {}, extra: Obj = {}): Promise<{ h: Harness; hop: NextHop }> {
  hop = await startNextHop();
  h = await startHarness(Object.assign({ otlp: Object.assign({ next_hop: hop.url }, otlp) }, extra));
  return { h, hop };
}

describe("POST /v1/logs", () => {
  it("enriches Fluent Bit's captured protobuf (kvlist body) in the body and answers only after the next hop", async () => {
    const { h, hop } = await start();
    const res = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-protobuf");
    const got = received(hop);
    expect(got).toHaveLength(1);
    const body = got[0]?.body as Obj;
    expect(body.rid).toBe("a1");
    expect(body.query_name).toBe("example.com");
    expect((body.dnsgeo as Obj).status).toBe("enriched");
    expect(((body.destination as Obj).geo as Obj).country_iso_code).toBeTypeOf("string");
    expect((body.dns as Obj).resolved_ip).toEqual(["93.184.216.34"]);
  });

  it("keeps every original field and its type (int stays int, double stays double) and the record's own time", async () => {
    const { h, hop } = await start();
    const rec = JSON.parse(ROUTE53_LINES[0] as string) as Obj;
    const body = jsToAny(rec);
    body.kvlistValue?.values?.push(kv("ratio", { doubleValue: 1 }), kv("big", { intValue: 42 }), kv("raw", { bytesValue: Buffer.from([1, 2, 3]) }));
    const res = await post(`${h.httpUrl}/v1/logs`, encodeLogsRequest(request([body])), PB);
    expect(res.status).toBe(200);
    const lr = hop.requests[0]?.resourceLogs?.[0]?.scopeLogs?.[0]?.logRecords?.[0];
    const values = lr?.body?.kvlistValue?.values ?? [];
    const byKey = new Map(values.map((x) => [x.key, x.value]));
    expect(Object.prototype.hasOwnProperty.call(byKey.get("ratio"), "doubleValue")).toBe(true);
    expect(Object.prototype.hasOwnProperty.call(byKey.get("big"), "intValue")).toBe(true);
    expect(Buffer.from(byKey.get("raw")?.bytesValue ?? []).toString("hex")).toBe("010203");
    expect(String(lr?.timeUnixNano)).toBe(String(1_700_000_000_000_000_000));
    for (const k of Object.keys(rec)) expect(byKey.has(k)).toBe(true);
    expect((anyToJs(byKey.get("dnsgeo")) as Obj).status).toBe("enriched");
    expect(hop.requests[0]?.resourceLogs?.[0]?.resource).toBeDefined();
  });

  it("OTLP/JSON with the record as a JSON string body: the body becomes the enriched JSON text; ids hex both ways", async () => {
    const { h, hop } = await start();
    const doc = {
      resourceLogs: [
        {
          scopeLogs: [
            {
              logRecords: [
                { timeUnixNano: "1700000000000000000", traceId: "5b8efff798038103d269b633813fc60c", spanId: "eee19b7ec3c1b174", body: { stringValue: ROUTE53_LINES[0] } },
                { body: { stringValue: "plain text, not a DNS record" }, attributes: [{ key: "n", value: { intValue: "7" } }] },
              ],
            },
          ],
        },
      ],
    };
    const res = await post(`${h.httpUrl}/v1/logs`, Buffer.from(JSON.stringify(doc)), { "content-type": "application/json" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(JSON.parse(res.body.toString())).toEqual({});
    const lrs = hop.requests[0]?.resourceLogs?.[0]?.scopeLogs?.[0]?.logRecords ?? [];
    expect(Buffer.from(lrs[0]?.traceId ?? []).toString("hex")).toBe("5b8efff798038103d269b633813fc60c");
    expect(Buffer.from(lrs[0]?.spanId ?? []).toString("hex")).toBe("eee19b7ec3c1b174");
    const text = lrs[0]?.body?.stringValue ?? "";
    // The ECS text path appends to the record's own text.
    expect(text.startsWith((ROUTE53_LINES[0] as string).slice(0, -1))).toBe(true);
    expect(((JSON.parse(text) as Obj).dnsgeo as Obj).status).toBe("enriched");
    expect(lrs[1]?.body?.stringValue).toBe("plain text, not a DNS record");
    expect(kvToObject(lrs[1]?.attributes ?? [])).toEqual({ n: 7 });
  });

  it("gzip Content-Encoding; records in attributes get the enrichment in the attributes", async () => {
    const { h, hop } = await start();
    const rec = JSON.parse(ROUTE53_LINES[0] as string) as Obj;
    const attrs = Object.entries(rec).map(([k, v]) => kv(k, jsToAny(v)));
    const req = request([{ stringValue: "query logged" }], [attrs]);
    const res = await post(`${h.httpUrl}/v1/logs`, gzipSync(encodeLogsRequest(req)), Object.assign({ "content-encoding": "gzip" }, PB));
    expect(res.status).toBe(200);
    const got = received(hop)[0];
    expect(got?.body).toBe("query logged");
    expect((got?.attrs.dnsgeo as Obj).status).toBe("enriched");
    expect(got?.attrs.query_name).toBe(rec.query_name);
  });

  it("otlp.semconv_attributes: geo.* semantic-convention attributes and dnsgeo.* for AS/ISP/ORG", async () => {
    const { h, hop } = await start({ semconv_attributes: true });
    const res = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(res.status).toBe(200);
    const lr = hop.requests[0]?.resourceLogs?.[0]?.scopeLogs?.[0]?.logRecords?.[0];
    const attrs = new Map((lr?.attributes ?? []).map((x) => [x.key, x.value]));
    expect(attrs.get("geo.location.lat")?.doubleValue).toBeTypeOf("number");
    expect(attrs.get("geo.location.lon")?.doubleValue).toBeTypeOf("number");
    expect(attrs.get("geo.country.iso_code")?.stringValue).toMatch(/^[A-Z]{2}$/);
    expect(attrs.get("dnsgeo.ip")?.stringValue).toBe("93.184.216.34");
    expect(attrs.get("dnsgeo.status")?.stringValue).toBe("enriched");
    // The same data as the body's ECS fields.
    const body = anyToJs(lr?.body) as Obj;
    const dest = body.destination as Obj;
    expect(attrs.get("geo.country.iso_code")?.stringValue).toBe((dest.geo as Obj).country_iso_code);
    const asn = (dest.as as Obj | undefined)?.number;
    if (asn !== undefined) expect(Number(attrs.get("dnsgeo.as.number")?.intValue)).toBe(asn);
  });

  it("next hop 503 or down → 503 + Retry-After (the shipper retries); its partial success is passed on", async () => {
    const { h, hop } = await start();
    hop.mode = "503";
    const r1 = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(r1.status).toBe(503);
    expect(r1.headers.get("retry-after")).toBe("1");
    expect(JSON.parse(r1.body.toString()).code).toBe("DNSGEO_NEXT_HOP_UNAVAILABLE");
    hop.mode = "partial";
    const r2 = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(r2.status).toBe(200);
    // ExportLogsServiceResponse { partial_success { rejected_log_records: 1, error_message } }
    const back = decodeLogsResponse(r2.body)?.partialSuccess;
    expect(String(back?.rejectedLogRecords)).toBe("1");
    expect(back?.errorMessage).toBe("one was too old");
    await hop.close();
    const r3 = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(r3.status).toBe(503);
  });

  it("a permanent refusal of the next hop is a rejected record in partial success, not a 4xx to the shipper", async () => {
    const { h, hop } = await start();
    hop.mode = "400";
    const res = await post(`${h.httpUrl}/v1/logs`, Buffer.from(JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: "x" } }, { body: { stringValue: "y" } }] }] }] })), { "content-type": "application/json" });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ partialSuccess: { rejectedLogRecords: "2", errorMessage: expect.stringContaining("400") as unknown } });
  });

  it("a request larger than otlp.max_send_bytes goes out in several, every record once", async () => {
    const { h, hop } = await start({ max_send_bytes: 4096 });
    const bodies = Array.from({ length: 60 }, (_, i) => jsToAny(Object.assign(JSON.parse(ROUTE53_LINES[i % ROUTE53_LINES.length] as string) as Obj, { rid: `r${i}` })));
    const res = await post(`${h.httpUrl}/v1/logs`, encodeLogsRequest(request(bodies)), PB);
    expect(res.status).toBe(200);
    expect(hop.requests.length).toBeGreaterThan(3);
    const rids = received(hop).map((r) => (r.body as Obj).rid);
    expect(rids).toEqual(bodies.map((_, i) => `r${i}`));
  });

  it("warns once when Fluent Bit sends exactly 1000 log records: its default batch_size loses the records of a batch answered 503 mid-chunk", async () => {
    const { h, hop } = await start();
    const warn = vi.spyOn(h.app.logger, "warn");
    const warned = (): number => warn.mock.calls.filter((c) => String(c[1]).includes("batch_size")).length;
    const body = encodeLogsRequest(request(Array.from({ length: 1000 }, (_, i) => ({ stringValue: ROUTE53_LINES[i % ROUTE53_LINES.length] as string }))));
    expect((await post(`${h.httpUrl}/v1/logs`, body, Object.assign({ "user-agent": "otel-collector" }, PB))).status).toBe(200);
    expect(warned()).toBe(0);
    for (let k = 0; k < 2; k++) expect((await post(`${h.httpUrl}/v1/logs`, body, Object.assign({ "user-agent": "Fluent-Bit" }, PB))).status).toBe(200);
    expect(warned()).toBe(1);
    expect(received(hop).length).toBe(3000);
  });

  it("a later part the next hop refuses for a while is tried again (the parts before it are not sent twice); past otlp.timeout_ms the shipper gets 503", async () => {
    const { h, hop } = await start({ max_send_bytes: 4096, timeout_ms: 2000 });
    const bodies = Array.from({ length: 30 }, (_, i) => jsToAny(Object.assign(JSON.parse(ROUTE53_LINES[i % ROUTE53_LINES.length] as string) as Obj, { rid: `r${i}` })));
    const body = encodeLogsRequest(request(bodies));
    hop.queue = ["ok", "503", "503"];
    const res = await post(`${h.httpUrl}/v1/logs`, body, PB);
    expect(res.status).toBe(200);
    expect(hop.requests.length).toBeGreaterThan(2);
    expect(received(hop).map((r) => (r.body as Obj).rid)).toEqual(bodies.map((_, i) => `r${i}`));
    // The first part fails: nothing was delivered, 503 at once.
    hop.mode = "503";
    let t0 = performance.now();
    expect((await post(`${h.httpUrl}/v1/logs`, body, PB)).status).toBe(503);
    expect(performance.now() - t0).toBeLessThan(1000);
    // A later part fails for longer than otlp.timeout_ms: 503 after about that long.
    hop.queue = ["ok"];
    t0 = performance.now();
    expect((await post(`${h.httpUrl}/v1/logs`, body, PB)).status).toBe(503);
    expect(performance.now() - t0).toBeGreaterThan(1000);
    expect(performance.now() - t0).toBeLessThan(6000);
  });

  it("garbage → 400, never a crash; wrong Content-Type → 400; the server still serves afterwards", async () => {
    const { h, hop } = await start();
    for (const bad of [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), Buffer.from("\xff\xfe garbage"), Buffer.from([0x0a, 0x05, 0x12, 0x03, 0x0a, 0x01])]) {
      const r = await post(`${h.httpUrl}/v1/logs`, bad, PB);
      expect(r.status).toBe(400);
    }
    for (const bad of ["{", "[]", '{"resourceLogs":5}', '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}']) {
      const r = await post(`${h.httpUrl}/v1/logs`, Buffer.from(bad), { "content-type": "application/json" });
      expect(r.status, bad).toBe(400);
    }
    // A body nested 2 000 AnyValues deep (12 kB): refused by the decoder's depth limit, not a stack overflow.
    expect((await post(`${h.httpUrl}/v1/logs`, deeplyNested(2000), PB)).status).toBe(400);
    expect((await post(`${h.httpUrl}/v1/logs`, Buffer.from(`{"resourceLogs":${"[".repeat(100_000)}`), { "content-type": "application/json" })).status).toBe(400);
    expect((await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, { "content-type": "text/plain" })).status).toBe(400);
    expect((await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB)).status).toBe(200);
    expect(hop.requests).toHaveLength(1);
  });

  it("without otlp.next_hop: 503 DNSGEO_OTLP_NOT_CONFIGURED (retryable, nothing dropped); the bearer token is required", async () => {
    h = await startHarness({ auth: { token: "s3cret" } });
    const r0 = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, PB);
    expect(r0.status).toBe(401);
    const r1 = await post(`${h.httpUrl}/v1/logs`, FLUENT_BIT_CAPTURE, Object.assign({ authorization: "Bearer s3cret" }, PB));
    expect(r1.status).toBe(503);
    expect(JSON.parse(r1.body.toString()).code).toBe("DNSGEO_OTLP_NOT_CONFIGURED");
  });

  it("body over http.max_body_bytes → 413", async () => {
    const { h } = await start({}, { http: { port: 0, overload_turn_ms: 0, max_body_bytes: 1000 } });
    const bodies = Array.from({ length: 20 }, () => ({ stringValue: ROUTE53_LINES[0] as string }));
    const r = await post(`${h.httpUrl}/v1/logs`, encodeLogsRequest(request(bodies)), PB);
    expect(r.status).toBe(413);
  });

  it("a body trickling past http.body_timeout_ms → 503 + Retry-After, not 408: OTLP exporters retry only 429/502/503/504 (Fluent Bit drops a chunk on 408)", async () => {
    const { h } = await start({}, { http: { port: 0, overload_turn_ms: 0, body_timeout_ms: 300 } });
    const answer = (path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const u = new URL(h.httpUrl);
        const sock = net.connect(Number(u.port), u.hostname);
        let text = "";
        const trickle = setInterval(() => sock.write(" "), 100);
        sock.on("data", (c: Buffer) => (text += c.toString("latin1")));
        sock.on("close", () => {
          clearInterval(trickle);
          resolve(text);
        });
        sock.on("error", () => undefined);
        sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${path === "/v1/logs" ? "application/x-protobuf" : "application/x-ndjson"}\r\nContent-Length: 1000\r\n\r\n{`);
        setTimeout(() => reject(new Error(`no answer on ${path}`)), 5000).unref();
      });
    const logs = await answer("/v1/logs");
    expect(logs).toMatch(/^HTTP\/1\.1 503 /);
    expect(logs.toLowerCase()).toContain("retry-after:");
    expect(logs).toContain("DNSGEO_BODY_TIMEOUT");
    // The other batch routes keep 408 (Vector and Fluent Bit's out_http retry it).
    expect(await answer("/v1/enrich")).toMatch(/^HTTP\/1\.1 408 /);
  });
});

function exportCall(address: string, bytes: Buffer, metadata = new grpc.Metadata()): Promise<{ err: grpc.ServiceError | null; res?: Buffer }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      LOGS_EXPORT_PATH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      metadata,
      (err, res) => {
        client.close();
        resolve(res === undefined ? { err } : { err, res });
      },
    );
  });
}

describe("gRPC LogsService/Export", () => {
  it("enriches and forwards; garbage → INVALID_ARGUMENT; next hop down → UNAVAILABLE; token checked", async () => {
    const { h, hop } = await start({}, { auth: { token: "t0k" } });
    const md = new grpc.Metadata();
    md.set("authorization", "Bearer t0k");
    const ok = await exportCall(h.grpcAddress, FLUENT_BIT_CAPTURE, md);
    expect(ok.err).toBeNull();
    expect(((received(hop)[0]?.body as Obj).dnsgeo as Obj).status).toBe("enriched");
    const bad = await exportCall(h.grpcAddress, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), md);
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const noToken = await exportCall(h.grpcAddress, FLUENT_BIT_CAPTURE);
    expect(noToken.err?.code).toBe(grpc.status.UNAUTHENTICATED);
    hop.mode = "503";
    const down = await exportCall(h.grpcAddress, FLUENT_BIT_CAPTURE, md);
    expect(down.err?.code).toBe(grpc.status.UNAVAILABLE);
  });
});
