import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { Readable } from "node:stream";
import * as zlib from "node:zlib";
import { createRequire } from "node:module";
import { Agent, request } from "undici";
import { FIXTURES, ROUTE53_LINES, startHarness, zstdStored, type Harness } from "./harness.js";

const snappy = createRequire(import.meta.url)("snappyjs") as { compress(b: Uint8Array): Uint8Array; uncompress(b: Uint8Array): Uint8Array };

type Framing = "ndjson" | "array" | "object";
type Coding = "none" | "gzip" | "deflate" | "zstd" | "snappy";

function frame(framing: Framing, lines: string[]): { body: Buffer; type: string } {
  if (framing === "ndjson") return { body: Buffer.from(lines.join("\n") + "\n"), type: "application/x-ndjson" };
  if (framing === "array") return { body: Buffer.from("[" + lines.join(",") + "]"), type: "application/json" };
  return { body: Buffer.from(lines[0] as string), type: "application/json" };
}

function encodeBody(b: Buffer, coding: Coding): Buffer {
  switch (coding) {
    case "none":
      return b;
    case "gzip":
      return zlib.gzipSync(b);
    case "deflate":
      return zlib.deflateSync(b);
    case "zstd":
      return zstdStored(b);
    case "snappy":
      return Buffer.from(snappy.compress(b));
  }
}

function parseFramed(framing: Framing, text: string): Array<Record<string, unknown>> {
  if (framing === "ndjson") return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
  if (framing === "array") return JSON.parse(text) as Array<Record<string, unknown>>;
  return [JSON.parse(text) as Record<string, unknown>];
}

const agent = new Agent({ connections: 16 });

async function post(url: string, body: Buffer | string, headers: Record<string, string> = {}) {
  const res = await request(url, { method: "POST", body, headers, dispatcher: agent });
  const buf = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body: buf, text: buf.toString("utf8") };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { method: "GET", headers, dispatcher: agent });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

describe("HTTP transport", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ http: { max_body_bytes: 64 * 1024, max_decoded_bytes: 256 * 1024 }, limits: { max_records_per_request: 50 } });
  });
  afterAll(async () => {
    await h.close();
  });

  const framings: Framing[] = ["ndjson", "array", "object"];
  const codings: Coding[] = ["none", "gzip", "deflate", "zstd", "snappy"];
  for (const framing of framings) {
    for (const coding of codings) {
      it(`round-trips ${framing} × ${coding} on /v1/enrich`, async () => {
        // Prepare
        const { body, type } = frame(framing, ROUTE53_LINES);
        const headers: Record<string, string> = { "content-type": type };
        if (coding !== "none") headers["content-encoding"] = coding;
        const sent = framing === "object" ? 1 : ROUTE53_LINES.length;
        // Act
        const res = await post(`${h.httpUrl}/v1/enrich`, encodeBody(body, coding), headers);
        // Assess
        expect(res.status).toBe(200);
        expect(String(res.headers["content-type"])).toBe(framing === "ndjson" ? "application/x-ndjson" : "application/json");
        if (framing === "object") expect(res.text.trimStart().startsWith("{")).toBe(true);
        if (framing === "array") expect(res.text.startsWith("[")).toBe(true);
        const out = parseFramed(framing, res.text);
        expect(out).toHaveLength(sent);
        for (let i = 0; i < sent; i++) {
          const orig = JSON.parse(ROUTE53_LINES[i] as string) as Record<string, unknown>;
          const rec = out[i] as Record<string, unknown>;
          expect(rec.query_name).toBe(orig.query_name);
          expect((rec.dnsgeo as { status?: string } | undefined)?.status).toMatch(/^(enriched|partial|pending|skipped)$/);
        }
      });
    }
  }

  for (const coding of ["gzip", "deflate", "snappy"] as const) {
    it(`compresses the answer per Accept-Encoding: ${coding}`, async () => {
      // Prepare
      const { body, type } = frame("ndjson", ROUTE53_LINES);
      // Act
      const res = await post(`${h.httpUrl}/v1/enrich`, body, { "content-type": type, "accept-encoding": `br;q=1, ${coding};q=0.8` });
      // Assess
      expect(res.status).toBe(200);
      expect(res.headers["content-encoding"]).toBe(coding);
      const plain =
        coding === "gzip" ? zlib.gunzipSync(res.body) : coding === "deflate" ? zlib.inflateSync(res.body) : Buffer.from(snappy.uncompress(res.body));
      expect(parseFramed("ndjson", plain.toString("utf8"))).toHaveLength(ROUTE53_LINES.length);
    });
  }

  it("passes lines that are not JSON through unchanged with 200", async () => {
    // Prepare
    const body = `not json at all\n${ROUTE53_LINES[0]}\n{broken\n`;
    // Act
    const res = await post(`${h.httpUrl}/v1/enrich`, body, { "content-type": "application/x-ndjson" });
    // Assess
    expect(res.status).toBe(200);
    const lines = res.text.split("\n").filter((l) => l !== "");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe("not json at all");
    expect(lines[2]).toBe("{broken");
  });

  it("refuses a body over http.max_body_bytes with 413 by Content-Length, and counts it", async () => {
    // Prepare
    const big = Buffer.alloc(100 * 1024, 0x20);
    // Act
    const res = await post(`${h.httpUrl}/v1/enrich`, big, { "content-type": "application/x-ndjson" });
    // Assess
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text).code).toBe("DNSGEO_BODY_TOO_LARGE");
    const metrics = await h.app.metrics.registry.getSingleMetricAsString("dnsgeo_requests_refused_total");
    expect(metrics).toMatch(/reason="too_large",?[^}]*\} [1-9]/);
  });

  it("refuses a chunked body that grows past http.max_body_bytes while it is read", async () => {
    // Prepare: no Content-Length, so only counting bytes catches it
    async function* chunks() {
      for (let i = 0; i < 20; i++) yield Buffer.alloc(8 * 1024, 0x20);
    }
    // Act
    const res = await request(`${h.httpUrl}/v1/enrich`, { method: "POST", body: Readable.from(chunks()), headers: { "content-type": "application/x-ndjson" }, dispatcher: agent }).then(
      async (r) => ({ status: r.statusCode, text: await r.body.text() }),
      (e: Error) => ({ status: -1, text: e.message }),
    );
    // Assess: the 413 arrives, or the connection is cut after it; never a 2xx
    expect([413, -1]).toContain(res.status);
    if (res.status === 413) expect(JSON.parse(res.text).code).toBe("DNSGEO_BODY_TOO_LARGE");
  });

  it("refuses a zstd bomb by decoded size without inflating it (413)", async () => {
    // Prepare: 200 MB of zeros in a few hundred bytes
    const bomb = readFileSync(new URL("inputs/bomb-200mb-zeros.zst", FIXTURES));
    // Act
    const res = await post(`${h.httpUrl}/v1/enrich`, bomb, { "content-type": "application/x-ndjson", "content-encoding": "zstd" });
    // Assess
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text).code).toBe("DNSGEO_BODY_TOO_LARGE");
  });

  it("refuses more records than limits.max_records_per_request (413)", async () => {
    // Prepare
    const body = Array.from({ length: 51 }, () => ROUTE53_LINES[0]).join("\n") + "\n";
    // Act
    const res = await post(`${h.httpUrl}/v1/enrich`, body, { "content-type": "application/x-ndjson" });
    // Assess
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text).code).toBe("DNSGEO_TOO_MANY_RECORDS");
  });

  it("answers 415 to an unknown Content-Encoding", async () => {
    // Act
    const res = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json", "content-encoding": "br" });
    // Assess
    expect(res.status).toBe(415);
    expect(JSON.parse(res.text).code).toBe("DNSGEO_UNSUPPORTED_ENCODING");
  });

  it("answers 404 naming the routes, and 405 with Allow", async () => {
    // Act
    const notFound = await get(`${h.httpUrl}/v2/nothing`);
    const wrongMethod = await get(`${h.httpUrl}/v1/enrich`);
    // Assess
    expect(notFound.status).toBe(404);
    expect(JSON.parse(notFound.text).routes).toContain("POST /v1/enrich");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe("POST");
    expect(JSON.parse(wrongMethod.text).routes).toContain("GET /v1/lookup/{ip}");
  });

  it("looks one IP up, refuses a special-purpose one with 400 and a reason, and looks up a list", async () => {
    // Act
    const one = await get(`${h.httpUrl}/v1/lookup/8.8.8.8`);
    const priv = await get(`${h.httpUrl}/v1/lookup/10.1.2.3`);
    const many = await post(`${h.httpUrl}/v1/lookup`, JSON.stringify({ ips: ["1.1.1.1", "192.168.0.1", "nope"] }), { "content-type": "application/json" });
    const bad = await post(`${h.httpUrl}/v1/lookup`, "{{", { "content-type": "application/json" });
    // Assess
    expect(one.status).toBe(200);
    expect(JSON.parse(one.text)).toMatchObject({ ip: "8.8.8.8" });
    expect(priv.status).toBe(400);
    expect(JSON.parse(priv.text)).toMatchObject({ code: "DNSGEO_NOT_LOOKUPABLE", reason: "private" });
    expect(many.status).toBe(200);
    const answers = JSON.parse(many.text) as Array<{ query: string; status: string }>;
    expect(answers.map((a) => a.status).slice(1)).toEqual(["skipped", "invalid"]);
    expect(bad.status).toBe(400);
  });

  it("serves /livez, /readyz and Prometheus /metrics", async () => {
    // Act
    const live = await get(`${h.httpUrl}/livez`);
    const ready = await get(`${h.httpUrl}/readyz`);
    const metrics = await get(`${h.httpUrl}/metrics`);
    // Assess
    expect(live.status).toBe(200);
    expect(ready.status).toBe(200);
    expect(metrics.status).toBe(200);
    expect(String(metrics.headers["content-type"])).toContain("text/plain");
    expect(metrics.text).toContain("dnsgeo_request_duration_seconds");
  });
});

/** Opens a raw request whose body never finishes, holding one in-flight slot. */
async function holdRequest(httpUrl: string): Promise<net.Socket> {
  const u = new URL(httpUrl);
  const sock = net.connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{"a":1}\n`);
  return sock;
}

describe("HTTP overload and disconnects", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ http: { max_inflight_requests: 1, retry_after_s: 7 } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers 503 + Retry-After at once past max_inflight_requests, and serves again once the slot frees", async () => {
    // Prepare
    const held = await holdRequest(h.httpUrl);
    await new Promise((r) => setTimeout(r, 100));
    // Act
    const refused = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json" });
    const live = await get(`${h.httpUrl}/livez`);
    held.destroy();
    let after = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json" });
    for (let i = 0; i < 50 && after.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json" });
    }
    // Assess
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("7");
    expect(JSON.parse(refused.text).code).toBe("DNSGEO_OVERLOADED");
    expect(live.status).toBe(200);
    expect(after.status).toBe(200);
  });
});

describe("HTTP bearer token", () => {
  let h: Harness;
  let hp: Harness;
  beforeAll(async () => {
    h = await startHarness({ auth: { token: "s3cret-token" } });
    hp = await startHarness({ auth: { token: "s3cret-token", protect_ops: true } });
  });
  afterAll(async () => {
    await Promise.all([h.close(), hp.close()]);
  });

  it("rejects a missing or wrong token with 401, accepts the right one and a Firehose access key", async () => {
    // Act
    const missing = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json" });
    const wrong = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json", authorization: "Bearer s3cret-tokem" });
    const right = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json", authorization: "Bearer s3cret-token" });
    const firehose = await post(`${h.httpUrl}/v1/enrich`, ROUTE53_LINES[0] as string, { "content-type": "application/json", "x-amz-firehose-access-key": "s3cret-token" });
    // Assess
    expect(missing.status).toBe(401);
    expect(JSON.parse(missing.text).code).toBe("DNSGEO_UNAUTHENTICATED");
    expect(wrong.status).toBe(401);
    expect(right.status).toBe(200);
    expect(firehose.status).toBe(200);
  });

  it("leaves /livez /readyz /metrics open unless auth.protect_ops", async () => {
    // Act
    const open = await get(`${h.httpUrl}/metrics`);
    const closed = await get(`${hp.httpUrl}/metrics`);
    const closedReady = await get(`${hp.httpUrl}/readyz`);
    const withToken = await get(`${hp.httpUrl}/readyz`, { authorization: "Bearer s3cret-token" });
    // Assess
    expect(open.status).toBe(200);
    expect(closed.status).toBe(401);
    expect(closedReady.status).toBe(401);
    expect(withToken.status).toBe(200);
  });
});
