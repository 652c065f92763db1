/**
 * Security checks against the real server: the token on every HTTP route and every
 * RPC of the proto that needs it, body caps, next hop and provider addresses taken
 * from config only, and logs that never print a token or key.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "undici";
import { createApp } from "../../src/app.js";
import { startServe } from "../../src/cli/serve.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { HTTP_ROUTES } from "../../src/transport/http-server.js";
import { enrichmentProtoPath, PROTO_OPTIONS } from "../../src/transport/grpc-server.js";
import { startFakeIpApi } from "../helpers/fake-ipapi.js";
import { route53Record } from "../helpers/shipper.js";
import { enrichmentClient, type AnyClient } from "../integration/transport/grpc-client.js";
import { startHarness, type Harness } from "../integration/transport/harness.js";
import { startReceiver } from "./stack.js";

const TOKEN = "tok-SECRET-a81f";
const RECORD = route53Record("sec", ["8.8.8.8"]);

async function call(url: string, method: string, body?: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await request(url, Object.assign({ method, headers: Object.assign({ "content-type": "application/x-ndjson" }, headers) }, body === undefined ? {} : { body }));
  await r.body.dump();
  return r.statusCode;
}

function routeRequest(route: string): { method: string; path: string; body?: string } {
  const [method, path] = route.split(" ") as [string, string];
  const p = path.replace("{ip}", "8.8.8.8");
  if (method !== "POST") return { method, path: p };
  return { method, path: p, body: p === "/v1/lookup" ? '["8.8.8.8"]' : RECORD + "\n" };
}

/** Calls one RPC (unary or stream) with `metadata`; resolves to the status code. */
function rpcStatus(client: AnyClient, name: string, def: protoLoader.MethodDefinition<object, object>, metadata: grpc.Metadata): Promise<grpc.status> {
  const req = name.startsWith("Lookup") ? { ips: ["8.8.8.8"] } : { records: [RECORD] };
  return new Promise((resolve) => {
    if (def.requestStream) {
      const call = (client[name] as (m: grpc.Metadata) => grpc.ClientDuplexStream<object, object>).call(client, metadata);
      call.on("data", () => undefined);
      call.on("error", (e: grpc.ServiceError) => resolve(e.code));
      call.on("status", (s: grpc.StatusObject) => resolve(s.code));
      call.write(req);
      call.end();
    } else {
      (client[name] as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void).call(client, req, metadata, (e) => resolve(e ? e.code : grpc.status.OK));
    }
  });
}

describe("security: auth on every route and RPC", () => {
  for (const protectOps of [false, true]) {
    describe(`protect_ops ${protectOps}`, () => {
      let h: Harness;
      beforeAll(async () => {
        h = await startHarness({ auth: { token: TOKEN, protect_ops: protectOps } });
      });
      afterAll(async () => h?.close());

      it("every HTTP route refuses a missing or wrong token (ops routes only when protect_ops) and serves the right one", async () => {
        for (const route of HTTP_ROUTES) {
          // Prepare
          const { method, path, body } = routeRequest(route);
          const ops = ["/livez", "/readyz", "/metrics", "/openapi.json", "/", "/status", "/status.json"].includes(path);
          // Act
          const none = await call(h.httpUrl + path, method, body);
          const wrong = await call(h.httpUrl + path, method, body, { authorization: "Bearer nope" });
          const right = await call(h.httpUrl + path, method, body, { authorization: `Bearer ${TOKEN}` });
          // Assess
          const expected = ops && !protectOps ? 200 : 401;
          expect(none, `${route} without token`).toBe(expected);
          expect(wrong, `${route} wrong token`).toBe(expected);
          // /v1/forward without forward.url answers 503 once authenticated.
          expect(right, `${route} with token`).not.toBe(401);
          expect([200, 503]).toContain(right);
        }
      });

      it("every RPC of dnsgeo.v1.Enrichment refuses a missing or wrong token and serves the right one", async () => {
        // Prepare
        const pkg = protoLoader.loadSync(enrichmentProtoPath(), PROTO_OPTIONS);
        const service = pkg["dnsgeo.v1.Enrichment"] as protoLoader.ServiceDefinition;
        const client = enrichmentClient(h.grpcAddress);
        const withToken = new grpc.Metadata();
        withToken.set("authorization", `Bearer ${TOKEN}`);
        const wrong = new grpc.Metadata();
        wrong.set("authorization", "Bearer nope");
        const names = Object.keys(service);
        // Act / Assess
        expect(names.length).toBeGreaterThanOrEqual(3);
        for (const name of names) {
          const def = service[name] as protoLoader.MethodDefinition<object, object>;
          expect(await rpcStatus(client, name, def, new grpc.Metadata()), `${name} without token`).toBe(grpc.status.UNAUTHENTICATED);
          expect(await rpcStatus(client, name, def, wrong), `${name} wrong token`).toBe(grpc.status.UNAUTHENTICATED);
          expect(await rpcStatus(client, name, def, withToken), `${name} with token`).toBe(grpc.status.OK);
        }
        client.close();
      });
    });
  }
});

describe("security: body caps", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ http: { max_body_bytes: 4096, max_decoded_bytes: 65536 }, grpc: { max_message_bytes: 4096 } });
  });
  afterAll(async () => h?.close());

  it("refuses bodies over max_body_bytes (with and without Content-Length) and bombs over max_decoded_bytes with 413", async () => {
    // Prepare
    const big = (RECORD + "\n").repeat(20);
    const bomb = gzipSync(Buffer.alloc(10 << 20, 0x20));
    // Act
    const withLength = await call(`${h.httpUrl}/v1/enrich`, "POST", big);
    const chunked = await request(`${h.httpUrl}/v1/enrich`, { method: "POST", body: Readable.from([Buffer.from(big)]), headers: { "content-type": "application/x-ndjson" } });
    await chunked.body.dump();
    const bombed = await request(`${h.httpUrl}/v1/enrich`, { method: "POST", body: bomb, headers: { "content-type": "application/x-ndjson", "content-encoding": "gzip" } });
    await bombed.body.dump();
    const small = await call(`${h.httpUrl}/v1/enrich`, "POST", RECORD + "\n");
    // Assess
    expect(bomb.length).toBeLessThan(4096 * 4);
    expect(withLength).toBe(413);
    expect(chunked.statusCode).toBe(413);
    expect(bombed.statusCode).toBe(413);
    expect(small).toBe(200);
  });

  it("refuses a gRPC message over grpc.max_message_bytes with RESOURCE_EXHAUSTED", async () => {
    // Prepare
    const client = enrichmentClient(h.grpcAddress);
    // Act
    const code = await rpcStatus(client, "Enrich", { requestStream: false } as protoLoader.MethodDefinition<object, object>, new grpc.Metadata()).then(async (ok) => {
      const big = await new Promise<grpc.status>((resolve) =>
        (client.Enrich as (r: object, cb: (e: grpc.ServiceError | null) => void) => void).call(client, { records: Array.from({ length: 40 }, () => RECORD) }, (e) => resolve(e ? e.code : grpc.status.OK)),
      );
      return [ok, big];
    });
    client.close();
    // Assess
    expect(code).toEqual([grpc.status.OK, grpc.status.RESOURCE_EXHAUSTED]);
  });
});

describe("security: where dnsgeo sends comes only from config", () => {
  it("headers, query parameters and body fields naming another next hop or provider are ignored", async () => {
    // Prepare
    const configured = await startReceiver();
    const attacker = await startReceiver();
    const fake = await startFakeIpApi();
    const evilFake = await startFakeIpApi();
    const h = await startHarness({ forward: { url: configured.url }, ipapi: { enabled: true, url: fake.url }, lookup: { batch_linger_ms: 0 } });
    const body = JSON.stringify(Object.assign(JSON.parse(RECORD) as object, { forward_url: attacker.url, url: attacker.url, ipapi_url: evilFake.url })) + "\n";
    const headers = { "x-forward-to": attacker.url, "x-forwarded-host": new URL(attacker.url).host, "x-ipapi-url": evilFake.url, forwarded: `host=${new URL(attacker.url).host}` };
    // Act
    const statuses = [
      await call(`${h.httpUrl}/v1/forward?url=${encodeURIComponent(attacker.url)}&forward_url=${encodeURIComponent(attacker.url)}`, "POST", body, headers),
      await call(`${h.httpUrl}/v1/enrich?ipapi_url=${encodeURIComponent(evilFake.url)}`, "POST", body, headers),
      await call(`${h.httpUrl}/v1/lookup/1.1.1.1?url=${encodeURIComponent(evilFake.url)}`, "GET", undefined, headers),
    ];
    for (let i = 0; i < 200 && fake.counts.requests === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await h.close();
    // Assess
    expect(statuses[0]).toBe(200);
    expect(configured.requests).toBe(1);
    expect(attacker.requests).toBe(0);
    expect(fake.counts.requests).toBeGreaterThan(0);
    expect(evilFake.counts.requests).toBe(0);
    await Promise.all([configured.close(), attacker.close(), fake.close(), evilFake.close()]);
  });
});

describe("security: logs never print tokens or keys", () => {
  it("with auth.token, ipapi.key and a forward Authorization header, failing requests log none of them", async () => {
    // Prepare
    const KEY = "key-SECRET-77c2";
    const FWD = "fwd-SECRET-19be";
    let logs = "";
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs += chunk.toString();
        cb();
      },
    });
    const logger = createLogger("trace", sink);
    const fake = await startFakeIpApi();
    await fake.setMode("500");
    const hop = await startReceiver();
    await hop.setMode("500");
    const cfg = loadConfig({
      overrides: {
        data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-sec-")),
        http: { port: 0, overload_turn_ms: 0 },
        grpc: { port: 0 },
        cache: { sqlite: { enabled: false } },
        auth: { token: TOKEN, protect_ops: true },
        ipapi: { url: fake.url, key: KEY, timeout_ms: 500 },
        lookup: { batch_linger_ms: 0 },
        forward: { url: hop.url, headers: [`Authorization: Bearer ${FWD}`] },
        shutdown: { timeout_ms: 1000 },
        log: { level: "trace" },
      },
    });
    const app = await createApp(cfg, { logger });
    const serve = await startServe(app);
    const base = `http://${serve.httpAddress ?? ""}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    // Act
    const statuses = [
      await call(`${base}/v1/enrich`, "POST", RECORD + "\n", { authorization: `Bearer ${TOKEN}x` }),
      await call(`${base}/v1/enrich`, "POST", RECORD + "\n", auth),
      await call(`${base}/v1/forward`, "POST", RECORD + "\n", auth),
      await call(`${base}/v1/lookup/9.9.9.9`, "GET", undefined, auth),
      await call(`${base}/metrics`, "GET", undefined, { authorization: `Bearer ${KEY}` }),
    ];
    for (let i = 0; i < 200 && fake.counts.requests === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    await serve.close();
    await Promise.all([fake.close(), hop.close()]);
    // Assess
    expect(statuses).toEqual([401, 200, 503, 200, 401]);
    expect(fake.counts.requests).toBeGreaterThan(0);
    expect(fake.lastQuery?.get("key")).toBe(KEY);
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of [TOKEN, KEY, FWD]) expect(logs.includes(secret), `log holds ${secret}`).toBe(false);
  });
});
