/**
 * Fuzz over the wire (WIRE_RUNS cases each) against a real in-process server:
 * random HTTP bodies with random framing and coding headers, and gRPC Enrich calls
 * with random record strings. Every request gets a well-formed answer in time,
 * never the internal-error answer, and gRPC gives back one record per record sent.
 */
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, request } from "undici";
import { ERROR_CODES } from "../../src/errors.js";
import { enrichmentClient, unary, type AnyClient, type EnrichResponse } from "../integration/transport/grpc-client.js";
import { startHarness, type Harness } from "../integration/transport/harness.js";
import { ipLike, oddUnicode, recordOf, WIRE_RUNS, wrongType, breathe } from "./support.js";

let h: Harness;
let agent: Agent;
let client: AnyClient;

beforeAll(async () => {
  h = await startHarness({ http: { max_body_bytes: 256 * 1024, max_decoded_bytes: 1 << 20 } });
  agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  client = enrichmentClient(h.grpcAddress);
});
afterAll(async () => {
  client?.close();
  await agent?.close();
  await h?.close();
});

const bodyArb = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.array(fc.tuple(fc.nat(4), fc.array(fc.oneof(ipLike, wrongType), { maxLength: 4 })), { maxLength: 20 }).map((rs) => Buffer.from(rs.map(([k, a], i) => JSON.stringify(recordOf(k, i, a))).join("\n"))),
  oddUnicode.map((s) => Buffer.from(s)),
  fc.integer({ min: 1, max: 20_000 }).map((n) => Buffer.from("[".repeat(n) + "]".repeat(n))),
);
const headerArb = fc.record({
  "content-type": fc.constantFrom("application/x-ndjson", "application/json", "text/plain", "application/octet-stream", "", "multipart/form-data; boundary=x"),
  "content-encoding": fc.constantFrom("identity", "gzip", "deflate", "zstd", "snappy", "br", "gzip, gzip", "x-nope", ""),
});

describe("fuzz: over the wire", { timeout: 3_600_000 }, () => {
  it("HTTP: random bodies and headers on every POST route get a well-formed answer, never 500", async () => {
    await fc.assert(
      fc.asyncProperty(bodyArb, headerArb, fc.constantFrom("/v1/enrich", "/v1/enrich?format=quicksight&explode=true", "/v1/lookup", "/v1/forward", "/v1/enrich?format=%ff"), async (body, headers, path) => {
        await breathe();
        const hs: Record<string, string> = {};
        for (const [k, v] of Object.entries(headers)) if (v !== "") hs[k] = v;
        const res = await request(`${h.httpUrl}${path}`, { method: "POST", body, headers: hs, dispatcher: agent });
        const text = await res.body.text();
        expect(res.statusCode).not.toBe(500);
        expect([200, 400, 413, 415, 503]).toContain(res.statusCode);
        if (res.statusCode !== 200) expect((JSON.parse(text) as { code: string }).code).toMatch(/^DNSGEO_/);
      }),
      { numRuns: WIRE_RUNS },
    );
    const live = await request(`${h.httpUrl}/livez`, { dispatcher: agent });
    await live.body.dump();
    expect(live.statusCode).toBe(200);
  });

  it("gRPC Enrich: random record strings come back one for one, or a mapped refusal, never the internal error", async () => {
    const recordStr = fc.oneof(
      oddUnicode,
      fc.string({ maxLength: 200 }),
      fc.tuple(fc.nat(4), fc.array(fc.oneof(ipLike, wrongType), { maxLength: 4 })).map(([k, a]) => JSON.stringify(recordOf(k, 0, a))),
      fc.integer({ min: 1, max: 100_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(recordStr, { maxLength: 10 }), fc.constantFrom(undefined, "ecs", "quicksight", "nope"), async (records, format) => {
        await breathe();
        const req: Record<string, unknown> = { records };
        if (format !== undefined) req.format = format;
        const out = await unary<EnrichResponse>(client, "Enrich", req).catch((e: grpc.ServiceError) => e);
        if (out instanceof Error) {
          expect(out.details).not.toBe(ERROR_CODES.DNSGEO_INTERNAL.message);
          expect([grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED]).toContain(out.code);
        } else {
          expect(out.records).toHaveLength(records.length);
        }
      }),
      { numRuns: WIRE_RUNS },
    );
  });
});
