import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { Agent, request } from "undici";
import { hasOpenssl, makeTestCerts, type TestCerts } from "../../helpers/certs.js";
import { ROUTE53_LINES, startHarness, type Harness } from "./harness.js";
import { enrichmentClient, unary, type EnrichResponse } from "./grpc-client.js";

describe.runIf(hasOpenssl())("TLS and mTLS", () => {
  let certs: TestCerts;
  let h: Harness;
  beforeAll(async () => {
    certs = makeTestCerts();
    const tls = { cert_file: certs.serverCertFile, key_file: certs.serverKeyFile, ca_file: certs.caFile, client_auth: "require" as const };
    h = await startHarness({ http: { tls }, grpc: { tls } });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function postWith(agent: Agent) {
    try {
      const res = await request(`${h.httpUrl}/v1/enrich`, { method: "POST", body: ROUTE53_LINES[0], headers: { "content-type": "application/json" }, dispatcher: agent });
      await res.body.dump();
      return res.statusCode;
    } catch (e) {
      return (e as Error & { code?: string }).code ?? "error";
    } finally {
      await agent.close();
    }
  }

  it("HTTPS accepts a client with a certificate from ca_file and rejects one without", async () => {
    // Act
    const withCert = await postWith(new Agent({ connect: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey, servername: "localhost" } }));
    const without = await postWith(new Agent({ connect: { ca: certs.ca, servername: "localhost" } }));
    // Assess
    expect(withCert).toBe(200);
    expect(without).not.toBe(200);
    expect(typeof without).toBe("string");
  });

  it("gRPC accepts a client with a certificate and rejects one without", async () => {
    // Prepare
    const opts = { "grpc.ssl_target_name_override": "localhost" };
    const good = enrichmentClient(h.grpcAddress, grpc.credentials.createSsl(certs.ca, certs.clientKey, certs.clientCert), opts);
    const bad = enrichmentClient(h.grpcAddress, grpc.credentials.createSsl(certs.ca), opts);
    // Act
    const ok = await unary<EnrichResponse>(good, "Enrich", { records: [ROUTE53_LINES[0]] });
    const err = await unary(bad, "Enrich", { records: [ROUTE53_LINES[0]] }, new grpc.Metadata()).catch((e: grpc.ServiceError) => e);
    good.close();
    bad.close();
    // Assess
    expect(ok.records).toHaveLength(1);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
  });
});
