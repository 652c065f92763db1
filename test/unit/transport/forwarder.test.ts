/** Forward settings that can never work are refused at start, naming the key. */
import { describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError, loadConfig } from "../../../src/config.js";
import { createLogger, silentLogger } from "../../../src/observability/logger.js";
import { canCompressZstd } from "../../../src/pipeline/decode.js";
import { Forwarder } from "../../../src/transport/forwarder.js";

describe("Forwarder settings", () => {
  it.runIf(!canCompressZstd)("refuses zstd compression on a Node.js that cannot compress zstd", () => {
    const cfg = loadConfig({ overrides: { forward: { url: "http://127.0.0.1:9/in", compression: "zstd" } } });
    expect(() => new Forwarder(cfg.forward, { logger: silentLogger() })).toThrow(ConfigError);
    expect(() => new Forwarder(cfg.forward, { logger: silentLogger() })).toThrow(/forward\.compression.*DNSGEO_FORWARD_COMPRESSION/);
  });

  it("accepts the compressions this Node.js can produce", async () => {
    for (const compression of ["none", "gzip", "deflate", "snappy"] as const) {
      const cfg = loadConfig({ overrides: { forward: { url: "http://127.0.0.1:9/in", compression } } });
      const f = new Forwarder(cfg.forward, { logger: silentLogger() });
      await f.close();
    }
  });
});

describe("Forwarder outcome of a next hop's status", () => {
  it("treats a 1xx/3xx final answer as unavailable with an error log naming it, and keeps 4xx as rejected", async () => {
    // Prepare: a next hop that answers the status named in the path
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(Number((req.url ?? "/").slice(1))).end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const lines: string[] = [];
    const logger = createLogger("info", { write: (l: string) => void lines.push(l) });
    const outcome = async (status: number) => {
      const cfg = loadConfig({ overrides: { forward: { url: `http://127.0.0.1:${port}/${status}`, timeout_ms: 2000 } } });
      const f = new Forwarder(cfg.forward, { logger });
      try {
        return await f.send([{ kind: "json", value: { a: 1 } }], "ndjson");
      } finally {
        await f.close();
      }
    };
    try {
      // Act
      const moved = await outcome(301);
      const found = await outcome(302);
      const notModified = await outcome(304);
      const bad = await outcome(400);
      // Assess
      expect(moved).toMatchObject({ ok: false, kind: "unavailable", status: 301 });
      expect(found).toMatchObject({ ok: false, kind: "unavailable", status: 302 });
      expect(notModified).toMatchObject({ ok: false, kind: "unavailable", status: 304 });
      expect(bad).toMatchObject({ ok: false, kind: "rejected", status: 400 });
      const errors = lines.map((l) => JSON.parse(l) as { level: number; msg: string; status?: number }).filter((l) => l.level >= 50);
      expect(errors.filter((l) => l.status === 301 && l.msg.includes("301"))).toHaveLength(1);
      expect(errors.filter((l) => l.status === 304 && l.msg.includes("304"))).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});
