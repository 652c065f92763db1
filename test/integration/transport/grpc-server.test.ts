import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as net from "node:net";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";
import { startFakeIpApi } from "../../helpers/fake-ipapi.js";
import { enrichmentClient, healthClient, reflectionClient, unary, type AnyClient, type EnrichResponse } from "./grpc-client.js";

describe("gRPC transport", () => {
  let h: Harness;
  let client: AnyClient;
  beforeAll(async () => {
    h = await startHarness({ limits: { max_records_per_request: 20 } });
    client = enrichmentClient(h.grpcAddress);
  });
  afterAll(async () => {
    client.close();
    await h.close();
  });

  it("Enrich returns every record, non-JSON unchanged, with counts and the id", async () => {
    // Prepare
    const records = [...ROUTE53_LINES, "not json"];
    // Act
    const res = await unary<EnrichResponse>(client, "Enrich", { records, id: "batch-1" });
    // Assess
    expect(res.id).toBe("batch-1");
    expect(res.records).toHaveLength(records.length);
    expect(res.records.at(-1)).toBe("not json");
    const first = JSON.parse(res.records[0] as string) as { query_name: string; dnsgeo: { status: string } };
    expect(first.query_name).toBe((JSON.parse(ROUTE53_LINES[0] as string) as { query_name: string }).query_name);
    expect(first.dnsgeo.status).toMatch(/^(enriched|partial|pending|skipped)$/);
    expect(res.counts?.unparsed).toBe(1);
  });

  it("Enrich honours format=quicksight and refuses an unknown format with INVALID_ARGUMENT", async () => {
    // Act
    const qs = await unary<EnrichResponse>(client, "Enrich", { records: [ROUTE53_LINES[0]], format: "quicksight", explode: false });
    const bad = await unary<EnrichResponse>(client, "Enrich", { records: [ROUTE53_LINES[0]], format: "xml" }).catch((e: grpc.ServiceError) => e);
    // Assess
    expect(JSON.parse(qs.records[0] as string)).toHaveProperty("enrichment_status");
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("Enrich refuses more than limits.max_records_per_request with an explicit status", async () => {
    // Act
    const err = await unary(client, "Enrich", { records: Array.from({ length: 21 }, () => ROUTE53_LINES[0]) }).catch((e: grpc.ServiceError) => e);
    // Assess
    expect((err as grpc.ServiceError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect((err as grpc.ServiceError).metadata.get("dnsgeo-error-code")[0]).toBe("DNSGEO_TOO_MANY_RECORDS");
  });

  it("EnrichStream answers each request in order with its id, then ends OK", async () => {
    // Prepare
    const call = client.EnrichStream() as grpc.ClientDuplexStream<unknown, EnrichResponse>;
    const got: EnrichResponse[] = [];
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.on("data", (r: EnrichResponse) => got.push(r));
    // Act
    for (let i = 0; i < 5; i++) call.write({ records: ROUTE53_LINES.slice(0, i + 1), id: `s${i}` });
    call.end();
    const status = await ended;
    // Assess
    expect(status.code).toBe(grpc.status.OK);
    expect(got.map((r) => r.id)).toEqual(["s0", "s1", "s2", "s3", "s4"]);
    expect(got.map((r) => r.records.length)).toEqual([1, 2, 3, 4, 5]);
  });

  it("Lookup answers one JSON object per IP in order", async () => {
    // Act
    const res = await unary<{ results: string[] }>(client, "Lookup", { ips: ["8.8.8.8", "10.0.0.1"] });
    // Assess
    const answers = res.results.map((r) => JSON.parse(r) as { ip: string; status: string; reason?: string });
    expect(answers[0]?.ip).toBe("8.8.8.8");
    expect(answers[1]).toMatchObject({ ip: "10.0.0.1", status: "skipped", reason: "private" });
  });

  it("reflection lists dnsgeo.v1.Enrichment and the health service", async () => {
    // Prepare
    const rc = reflectionClient(h.grpcAddress);
    const call = rc.ServerReflectionInfo() as grpc.ClientDuplexStream<unknown, { list_services_response?: { service: Array<{ name: string }> } }>;
    // Act
    const names = await new Promise<string[]>((resolve, reject) => {
      call.on("data", (r) => resolve((r.list_services_response?.service ?? []).map((s: { name: string }) => s.name)));
      call.on("error", reject);
      call.write({ list_services: "" });
    });
    call.end();
    rc.close();
    // Assess
    expect(names).toContain("dnsgeo.v1.Enrichment");
    expect(names).toContain("grpc.health.v1.Health");
  });
});

describe("gRPC health", () => {
  it("Check says SERVING; Watch sees NOT_SERVING when the server shuts down", async () => {
    // Prepare
    const h = await startHarness();
    const hc = healthClient(h.grpcAddress);
    const check = await unary<{ status: string }>(hc, "Check", { service: "dnsgeo.v1.Enrichment" });
    const watch = hc.Watch({ service: "dnsgeo.v1.Enrichment" }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on("error", () => {});
    const notServing = new Promise<void>((resolve) =>
      watch.on("data", (m) => {
        seen.push(m.status);
        if (m.status === "NOT_SERVING") resolve();
      }),
    );
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (seen.length > 0) {
          clearInterval(t);
          resolve();
        }
      }, 5);
    });
    // Act
    const closing = h.close();
    await notServing;
    await closing;
    hc.close();
    // Assess
    expect(check.status).toBe("SERVING");
    expect(seen[0]).toBe("SERVING");
    expect(seen.at(-1)).toBe("NOT_SERVING");
  });
});

describe("gRPC bearer token", () => {
  let h: Harness;
  let client: AnyClient;
  beforeAll(async () => {
    h = await startHarness({ auth: { token: "grpc-token" } });
    client = enrichmentClient(h.grpcAddress);
  });
  afterAll(async () => {
    client.close();
    await h.close();
  });

  it("rejects a missing or wrong token with UNAUTHENTICATED and accepts the right one; health stays open", async () => {
    // Prepare
    const wrong = new grpc.Metadata();
    wrong.set("authorization", "Bearer grpc-tokem");
    const right = new grpc.Metadata();
    right.set("authorization", "Bearer grpc-token");
    const hc = healthClient(h.grpcAddress);
    // Act
    const missingErr = await unary(client, "Enrich", { records: [ROUTE53_LINES[0]] }).catch((e: grpc.ServiceError) => e);
    const wrongErr = await unary(client, "Enrich", { records: [ROUTE53_LINES[0]] }, wrong).catch((e: grpc.ServiceError) => e);
    const ok = await unary<EnrichResponse>(client, "Enrich", { records: [ROUTE53_LINES[0]] }, right);
    const health = await unary<{ status: string }>(hc, "Check", { service: "" });
    hc.close();
    // Assess
    expect((missingErr as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((wrongErr as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect(ok.records).toHaveLength(1);
    expect(health.status).toBe("SERVING");
  });
});

describe("gRPC overload (its own slots, not HTTP's)", () => {
  it("answers RESOURCE_EXHAUSTED with grpc.retry_after_s as retry pushback while its only slot is held by another call", async () => {
    // Prepare: no offline data and an ip-api that never answers, so a call with a new IP
    // holds its slot until the lookup deadline.
    const ipapi = await startFakeIpApi();
    await ipapi.setMode("hang");
    const h = await startHarness({ grpc: { max_inflight_requests: 1, retry_after_s: 3 }, mmdb: { enabled: false }, ipapi: { enabled: true, url: ipapi.url, timeout_ms: 1000 }, lookup: { deadline_ms: 1500 } });
    const client = enrichmentClient(h.grpcAddress);
    try {
      const holding = unary(client, "Enrich", { records: [ROUTE53_LINES[0]] });
      await new Promise((r) => setTimeout(r, 200));
      // Act
      const err = await unary(client, "Enrich", { records: [ROUTE53_LINES[1]] }).catch((e: grpc.ServiceError) => e);
      // Assess
      expect((err as grpc.ServiceError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect((err as grpc.ServiceError).metadata.get("grpc-retry-pushback-ms")[0]).toBe("3000");
      expect((await holding as EnrichResponse).records).toHaveLength(1);
    } finally {
      client.close();
      await h.close();
      await ipapi.close();
    }
  });

  it("keeps answering gRPC while an HTTP client holds every HTTP slot", async () => {
    // Prepare
    const h = await startHarness({ http: { max_inflight_requests: 1 } });
    const client = enrichmentClient(h.grpcAddress);
    const u = new URL(h.httpUrl);
    const sock = net.connect(Number(u.port), u.hostname);
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 100));
    try {
      // Act
      const res = await unary<EnrichResponse>(client, "Enrich", { records: [ROUTE53_LINES[0]] });
      // Assess
      expect(res.records).toHaveLength(1);
    } finally {
      sock.destroy();
      client.close();
      await h.close();
    }
  });
});

describe("gRPC message limits", () => {
  it("answers a request near grpc.max_message_bytes even though its enriched answer is larger", async () => {
    // Prepare: a request just under the receive limit; enrichment makes the answer bigger than it
    const limit = 8 * 1024;
    const h = await startHarness({ grpc: { max_message_bytes: limit } });
    const client = enrichmentClient(h.grpcAddress);
    const records: string[] = [];
    let size = 0;
    for (let i = 0; size + (ROUTE53_LINES[i % ROUTE53_LINES.length] as string).length + 8 < limit - 64; i++) {
      const line = ROUTE53_LINES[i % ROUTE53_LINES.length] as string;
      records.push(line);
      size += line.length + 4;
    }
    try {
      // Act
      const res = await unary<EnrichResponse>(client, "Enrich", { records });
      // Assess
      expect(res.records).toHaveLength(records.length);
      expect(res.records.reduce((n, r) => n + r.length, 0)).toBeGreaterThan(limit);
    } finally {
      client.close();
      await h.close();
    }
  });
});
