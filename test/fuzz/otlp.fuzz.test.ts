/**
 * Fuzz of the OTLP logs decoders and of POST /v1/logs and LogsService/Export (RUNS cases
 * in-process, WIRE_RUNS over the wire): random bytes, valid requests cut short or with
 * bytes changed, random JSON and OTLP/JSON with wrong types. Decoding either gives a
 * request or refuses it as DNSGEO_BAD_REQUEST; a decoded request always enriches and
 * encodes again; over the wire every answer is 200, 400, 413, 415 or 503, never 500, and
 * gRPC never answers INTERNAL or UNKNOWN.
 */
import * as http from "node:http";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, request } from "undici";
import { DnsgeoError } from "../../src/errors.js";
import { jsToAny, enrichLogsRequest } from "../../src/transport/otlp-logs.js";
import { decodeLogsRequest, decodeLogsRequestJson, encodeLogsRequest, LOGS_EXPORT_PATH, type AnyValue, type ExportLogsRequest } from "../../src/transport/otlp-proto.js";
import { startHarness, type Harness } from "../integration/transport/harness.js";
import { ipLike, recordOf, RUNS, WIRE_RUNS, wrongType, breathe } from "./support.js";

let h: Harness;
let agent: Agent;
let grpcClient: grpc.Client;
let hop: http.Server;

beforeAll(async () => {
  hop = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/x-protobuf" }).end());
  });
  await new Promise<void>((r) => hop.listen(0, "127.0.0.1", r));
  const port = (hop.address() as { port: number }).port;
  h = await startHarness({ http: { max_body_bytes: 256 * 1024, max_decoded_bytes: 1 << 20 }, otlp: { next_hop: `http://127.0.0.1:${port}` } });
  agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  grpcClient = new grpc.Client(h.grpcAddress, grpc.credentials.createInsecure());
});
afterAll(async () => {
  grpcClient?.close();
  await agent?.close();
  await h?.close();
  await new Promise<void>((r) => hop.close(() => r()));
});

/** A body: a DNS record as a map or as JSON text, or any JSON value as a map. */
const bodyArb: fc.Arbitrary<AnyValue> = fc.oneof(
  fc.tuple(fc.nat(4), fc.nat(1000), fc.array(fc.oneof(ipLike, wrongType), { maxLength: 4 })).map(([k, i, a]) => jsToAny(recordOf(k, i, a))),
  fc.tuple(fc.nat(4), fc.nat(1000), fc.array(ipLike, { maxLength: 4 })).map(([k, i, a]) => ({ stringValue: JSON.stringify(recordOf(k, i, a)) })),
  fc.jsonValue({ maxDepth: 4 }).map((v) => jsToAny(v)),
);
const requestArb: fc.Arbitrary<ExportLogsRequest> = fc
  .array(fc.tuple(bodyArb, fc.option(fc.jsonValue({ maxDepth: 2 }))), { maxLength: 8 })
  .map((recs) => ({ resourceLogs: [{ scopeLogs: [{ logRecords: recs.map(([body, attr]) => ({ body, attributes: attr === null ? [] : [{ key: "a", value: jsToAny(attr) }] })) }] }] }));
/** Valid bytes, then cut short or with some bytes changed. */
const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  requestArb.map((r) => encodeLogsRequest(r)),
  fc.tuple(requestArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat())).map(([r, flips, cut]) => {
    const b = Buffer.from(encodeLogsRequest(r));
    if (b.length === 0) return b;
    for (const [at, v] of flips) b[at % b.length] = v;
    return cut === null ? b : b.subarray(0, cut % (b.length + 1));
  }),
);
const jsonArb = fc.oneof(
  fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [v, { body: v, traceId: v, attributes: v }] }] }] })),
  fc.string().map((s) => `{"resourceLogs":${s}}`),
);

function decodesOrRefuses(decode: () => ExportLogsRequest): ExportLogsRequest | undefined {
  try {
    return decode();
  } catch (e) {
    expect(e).toBeInstanceOf(DnsgeoError);
    expect((e as DnsgeoError).code).toBe("DNSGEO_BAD_REQUEST");
    return undefined;
  }
}

describe("fuzz: OTLP logs", { timeout: 3_600_000 }, () => {
  it("protobuf and OTLP/JSON decoders: a request or DNSGEO_BAD_REQUEST; a decoded request enriches and encodes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytesArb.map((b) => ({ pb: b })), jsonArb.map((j) => ({ json: j }))), async (input) => {
        const req = decodesOrRefuses(() => ("pb" in input ? decodeLogsRequest(input.pb) : decodeLogsRequestJson(input.json)));
        if (!req) return;
        await enrichLogsRequest(h.app.enricher, req, { semconv: true });
        expect(encodeLogsRequest(req)).toBeInstanceOf(Buffer);
      }),
      { numRuns: RUNS },
    );
  });

  it("POST /v1/logs: random bodies get 200/400/413/415/503, never 500; LogsService/Export never INTERNAL or UNKNOWN", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytesArb, jsonArb.map((s) => Buffer.from(s))), fc.constantFrom("application/x-protobuf", "application/json", "text/plain"), fc.boolean(), async (body, type, gz) => {
        await breathe();
        const headers: Record<string, string> = { "content-type": type };
        if (gz) headers["content-encoding"] = "gzip";
        const res = await request(`${h.httpUrl}/v1/logs`, { method: "POST", body: gz ? gzipSync(body) : body, headers, dispatcher: agent });
        await res.body.dump();
        expect([200, 400, 413, 415, 503]).toContain(res.statusCode);
        const code = await new Promise<grpc.status>((resolve) => {
          grpcClient.makeUnaryRequest(LOGS_EXPORT_PATH, (b: Buffer) => b, (b: Buffer) => b, body, (err) => resolve(err ? err.code : grpc.status.OK));
        });
        expect([grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAVAILABLE]).toContain(code);
      }),
      { numRuns: WIRE_RUNS },
    );
    const live = await request(`${h.httpUrl}/livez`, { dispatcher: agent });
    await live.body.dump();
    expect(live.statusCode).toBe(200);
  });
});
