/**
 * GET /openapi.json: the document a running dnsgeo serves is a valid OpenAPI 3.1
 * description (checked by an OpenAPI validator against the official schema),
 * its operations are exactly the server's routes, each path allows exactly the
 * documented methods (the 405's Allow header), and a real call of each
 * operation gets a status the document lists for it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { Validator } from "@seriousme/openapi-schema-validator";
import { HTTP_ROUTES } from "../../../src/transport/http-server.js";
import { openApiDocument } from "../../../src/transport/openapi.js";
import { startServe, type ServeChild } from "../../helpers/cli.js";

type Operation = { operationId: string; responses: Record<string, unknown> };
type Doc = { openapi: string; info: { version: string }; paths: Record<string, Record<string, Operation>> };

let serve: ServeChild;
let base: string;

beforeAll(async () => {
  serve = await startServe({
    DNSGEO_HTTP_PORT: "0",
    DNSGEO_GRPC_ENABLED: "false",
    DNSGEO_CACHE_SQLITE_ENABLED: "false",
    DNSGEO_IPAPI_ENABLED: "false",
    DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-openapi-")),
  });
  base = `http://${serve.http}`;
}, 60_000);

afterAll(async () => {
  await serve?.stop();
});

async function served(): Promise<Doc> {
  const res = await request(`${base}/openapi.json`);
  expect(res.statusCode).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^application\/json/);
  return (await res.body.json()) as Doc;
}

describe("GET /openapi.json", () => {
  it("serves the document the code builds, and an OpenAPI validator finds it a valid 3.1 description", async () => {
    // Act
    const doc = await served();
    const validator = new Validator();
    const result = await validator.validate(doc);
    // Assess
    expect(doc).toEqual(openApiDocument());
    expect(result, JSON.stringify(result.errors)).toEqual({ valid: true });
    expect(validator.version).toBe("3.1");
    const broken = await new Validator().validate({ ...doc, paths: { "/x": { get: { responses: { "200": {} } } } } });
    expect(broken.valid).toBe(false);
  });

  it("describes exactly the routes the server has", async () => {
    // Act
    const doc = await served();
    const ops = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
    // Assess
    expect(ops.sort()).toEqual([...HTTP_ROUTES].sort());
  });

  it("each path allows exactly the documented methods (and HEAD where GET is documented for ops routes)", async () => {
    // Prepare
    const doc = await served();
    for (const [path, methods] of Object.entries(doc.paths)) {
      const url = `${base}${path.replace("{ip}", "8.8.8.8")}`;
      // Act
      const res = await request(url, { method: "PATCH", body: "" });
      await res.body.dump();
      // Assess
      expect(res.statusCode, path).toBe(405);
      const allowed = String(res.headers.allow ?? "")
        .split(",")
        .map((m) => m.trim().toLowerCase())
        .filter((m) => m !== "head" && m !== "");
      expect(allowed.sort(), path).toEqual(Object.keys(methods).sort());
    }
  });

  it("a real call of each operation gets a status its responses list", async () => {
    // Prepare
    const doc = await served();
    const record = '{"version":"1.100000","query_name":"dns.google.","query_type":"A","rcode":"NOERROR","answers":[{"Rdata":"8.8.8.8","Type":"A","Class":"IN"}],"srcaddr":"10.0.1.23"}\n';
    const calls: Record<string, () => Promise<number>> = {
      enrich: () => status("/v1/enrich", "POST", record, "application/x-ndjson"),
      forward: () => status("/v1/forward", "POST", record, "application/x-ndjson"),
      otlpLogs: () => status("/v1/logs", "POST", '{"resourceLogs":[]}', "application/json"),
      lookupOne: () => status("/v1/lookup/8.8.8.8", "GET"),
      lookupMany: () => status("/v1/lookup", "POST", '["8.8.8.8", "10.0.0.1"]', "application/json"),
      livez: () => status("/livez", "GET"),
      readyz: () => status("/readyz", "GET"),
      metrics: () => status("/metrics", "GET"),
      openapi: () => status("/openapi.json", "GET"),
      statusRoot: () => status("/", "GET"),
      status: () => status("/status", "GET"),
      statusJson: () => status("/status.json", "GET"),
    };
    const ops = Object.values(doc.paths).flatMap((m) => Object.values(m));
    // Assess
    expect(ops.map((o) => o.operationId).sort()).toEqual(Object.keys(calls).sort());
    for (const op of ops) {
      const got = await (calls[op.operationId] as () => Promise<number>)();
      expect(Object.keys(op.responses), `${op.operationId} answered ${got}`).toContain(String(got));
    }
  });
});

async function status(path: string, method: "GET" | "POST", body?: string, type?: string): Promise<number> {
  const res = await request(`${base}${path}`, Object.assign({ method }, body !== undefined ? { body, headers: { "content-type": type ?? "application/json" } } : {}));
  await res.body.dump();
  return res.statusCode;
}
