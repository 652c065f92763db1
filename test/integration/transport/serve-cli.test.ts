import { describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { ROUTE53_LINES } from "./harness.js";
import { startServe } from "../../helpers/cli.js";

// `.ci/run` builds dist/ (npm ci → prepare) before the tests run.

/** Errors that mean the request never reached the application (the listener was already closed). */
const NOT_ACCEPTED = new Set(["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET"]);

describe("dnsgeo serve (the built CLI)", () => {
  it("on SIGTERM during load answers every accepted request, finishes a request still uploading, and exits 0", async () => {
    // Prepare
    const serve = await startServe({
      DNSGEO_HTTP_PORT: "0",
      DNSGEO_GRPC_PORT: "0",
      DNSGEO_CACHE_SQLITE_ENABLED: "false",
      DNSGEO_IPAPI_ENABLED: "false",
      DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-serve-")),
      DNSGEO_SHUTDOWN_TIMEOUT_MS: "10000",
      // This test is about shutdown; overload refusals are covered elsewhere.
      DNSGEO_HTTP_OVERLOAD_TURN_MS: "0",
    });
    const base = `http://${serve.http}`;
    const body = Array.from({ length: 400 }, (_, i) => ROUTE53_LINES[i % ROUTE53_LINES.length]).join("\n") + "\n";
    const outcomes: Array<number | string> = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          // A fresh connection per request, so "accepted" means the server took the connection.
          const res = await request(`${base}/v1/enrich`, { method: "POST", body, headers: { "content-type": "application/x-ndjson" }, reset: true });
          const text = await res.body.text();
          outcomes.push(res.statusCode);
          if (res.statusCode === 200) expect(text.split("\n").filter((l) => l !== "")).toHaveLength(400);
          if (res.statusCode !== 200) stop = true;
        } catch (e) {
          outcomes.push((e as { code?: string }).code ?? String(e));
          stop = true;
        }
      }
    };
    // A request still uploading its body when SIGTERM arrives.
    const u = new URL(base);
    const sock = net.connect(Number(u.port), u.hostname);
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    const line = Buffer.from((ROUTE53_LINES[0] as string) + "\n");
    let reply = "";
    sock.on("data", (b: Buffer) => (reply += b.toString()));
    const sockClosed = new Promise<void>((resolve) => sock.on("close", () => resolve()));
    sock.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${line.length}\r\n\r\n`);
    sock.write(line.subarray(0, 20));
    const workers = Array.from({ length: 16 }, () => worker());
    await new Promise((r) => setTimeout(r, 300));

    // Act
    serve.child.kill("SIGTERM");
    // The rest of the body goes out only once the server has begun shutting down.
    while (!serve.log().includes('"msg":"shutting down"')) await new Promise((r) => setTimeout(r, 10));
    sock.write(line.subarray(20));
    await Promise.all(workers);
    await sockClosed;
    const code = await serve.exited;

    // Assess
    expect(code).toBe(0);
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(reply.toLowerCase()).toContain("connection: close");
    expect(outcomes.filter((o) => o === 200).length).toBeGreaterThan(0);
    for (const o of outcomes) {
      if (typeof o === "number") expect([200, 503]).toContain(o);
      else expect(NOT_ACCEPTED.has(o)).toBe(true);
    }
  }, 60_000);
});
