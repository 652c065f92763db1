/** Forward settings that can never work are refused at start, naming the key. */
import { describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError, headerObject, loadConfig } from "../../../src/config.js";
import { createLogger, silentLogger } from "../../../src/observability/logger.js";
import { canCompressZstd } from "../../../src/codecs/compression.js";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deadLetterPath } from "../../../src/config.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { DeadLetterFile, readDeadLetters } from "../../../src/transport/dead-letter.js";
import { Forwarder } from "../../../src/transport/forwarder.js";

describe("Forwarder settings", () => {
  it("refuses a header line without a name and a colon, naming the key, for every next hop and the alert webhook", () => {
    for (const overrides of [{ forward: { headers: ["X-Token abc"] } }, { otlp: { headers: [": no name"] } }, { policy: { alert: { url: "http://127.0.0.1:9/a", headers: ["nocolon"] } } }]) {
      expect(() => loadConfig({ overrides }), JSON.stringify(overrides)).toThrow(ConfigError);
      expect(() => loadConfig({ overrides }), JSON.stringify(overrides)).toThrow(/headers.*expected "Name: value"/);
    }
  });

  it("sends the configured headers with their names in lower case and values trimmed", () => {
    expect(headerObject(["X-Token: abc ", "Authorization:Bearer a:b"])).toEqual({ "x-token": "abc", authorization: "Bearer a:b" });
  });

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
  it("treats a 1xx/3xx final answer as unavailable with an error log naming it, and a 4xx without a dead-letter file as unavailable too", async () => {
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
      expect(bad).toMatchObject({ ok: false, kind: "unavailable", status: 400 });
      expect(bad.ok ? "" : bad.detail).toContain("no dead-letter file");
      const errors = lines.map((l) => JSON.parse(l) as { level: number; msg: string; status?: number }).filter((l) => l.level >= 50);
      expect(errors.filter((l) => l.status === 301 && l.msg.includes("301"))).toHaveLength(1);
      expect(errors.filter((l) => l.status === 304 && l.msg.includes("304"))).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});

/**
 * A next hop like Fluent Bit's in_http: refuses a body over `maxBody` with 413 and,
 * when `refuse` says so, a whole request with 400 if any record in it is marked.
 * Records are NDJSON objects with an `id`; accepted ids are counted.
 */
async function startHop(opts: { maxBody: number; refuse?: (rec: { id: string; bad?: boolean }) => boolean }) {
  const accepted = new Map<string, number>();
  const sizes: number[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const wire = Buffer.concat(chunks);
      sizes.push(wire.length);
      if (wire.length > opts.maxBody) return void res.writeHead(413).end("payload too large");
      const body = req.headers["content-encoding"] === "gzip" ? gunzipSync(wire) : wire;
      const recs = body
        .toString("utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as { id: string; bad?: boolean });
      if (opts.refuse && recs.some(opts.refuse)) return void res.writeHead(400, { "content-type": "text/plain" }).end("error: a marked record");
      for (const r of recs) accepted.set(r.id, (accepted.get(r.id) ?? 0) + 1);
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`, accepted, sizes, close: () => new Promise<void>((r) => server.close(() => r())) };
}

function records(n: number, pad: number, bad?: (i: number) => boolean) {
  return Array.from({ length: n }, (_, i) => ({ kind: "json" as const, value: Object.assign({ id: `r${i}`, pad: "x".repeat(pad) }, bad?.(i) ? { bad: true } : {}) }));
}

describe("Forwarder splits batches so the next hop's size limit loses nothing", () => {
  it("sends no body over forward.max_body_bytes and delivers every record once", async () => {
    // Prepare: 2 000 records of ~1 KB, a next hop that refuses bodies over 64 KiB, forward.max_body_bytes 60 000
    const hop = await startHop({ maxBody: 64 * 1024 });
    const cfg = loadConfig({ overrides: { forward: { url: hop.url, max_body_bytes: 60_000 } } });
    const f = new Forwarder(cfg.forward, { logger: silentLogger() });
    try {
      // Act
      const r = await f.send(records(2000, 1000), "ndjson");
      // Assess
      expect(r).toMatchObject({ ok: true, delivered: 2000, deadLettered: 0 });
      expect(hop.accepted.size).toBe(2000);
      expect([...hop.accepted.values()].every((c) => c === 1)).toBe(true);
      expect(Math.max(...hop.sizes)).toBeLessThanOrEqual(60_000);
      expect(hop.sizes.length).toBeGreaterThan(30);
    } finally {
      await f.close();
      await hop.close();
    }
  });

  it("cuts a request the next hop answers 413 in two until it fits, with a count in the split metric", async () => {
    // Prepare: the next hop's limit (16 KiB) is far below forward.max_body_bytes (the default)
    const hop = await startHop({ maxBody: 16 * 1024 });
    const metrics = createMetrics();
    const cfg = loadConfig({ overrides: { forward: { url: hop.url, compression: "gzip" } } });
    const f = new Forwarder(cfg.forward, { logger: silentLogger(), metrics });
    try {
      // Act: incompressible-ish records so gzip does not hide the size
      const items = Array.from({ length: 500 }, (_, i) => ({ kind: "json" as const, value: { id: `r${i}`, pad: randomBytes(300).toString("base64") } }));
      const r = await f.send(items, "ndjson");
      // Assess
      expect(r).toMatchObject({ ok: true, delivered: 500 });
      expect(hop.accepted.size).toBe(500);
      expect([...hop.accepted.values()].every((c) => c === 1)).toBe(true);
      const splits = (await metrics.registry.getSingleMetric("dnsgeo_forward_splits_total")?.get())?.values[0]?.value ?? 0;
      expect(splits).toBeGreaterThan(0);
    } finally {
      await f.close();
      await hop.close();
    }
  });

  it("delivers the rest and dead-letters exactly the records the next hop refuses", async () => {
    // Prepare: 1 % of 2 000 records marked; the next hop answers 400 to any request holding one
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-fwd-"));
    const hop = await startHop({ maxBody: 1 << 30, refuse: (r) => r.bad === true });
    const metrics = createMetrics();
    const cfg = loadConfig({ overrides: { data_dir: dir, forward: { url: hop.url } } });
    const dl = new DeadLetterFile(deadLetterPath(cfg), cfg.forward.dead_letter.max_bytes);
    const f = new Forwarder(cfg.forward, { logger: silentLogger(), metrics, deadLetter: dl });
    const bad = (i: number) => i % 100 === 37;
    try {
      // Act
      const r = await f.send(records(2000, 50, bad), "ndjson");
      // Assess
      expect(r).toMatchObject({ ok: true, delivered: 1980, deadLettered: 20 });
      const expected = Array.from({ length: 2000 }, (_, i) => i).filter((i) => !bad(i)).map((i) => `r${i}`);
      expect([...hop.accepted.keys()].sort()).toEqual(expected.sort());
      expect([...hop.accepted.values()].every((c) => c === 1)).toBe(true);
      const { records: dead } = await readDeadLetters(dl.path);
      expect(dead.map((d) => (JSON.parse(d.text) as { id: string }).id).sort()).toEqual(Array.from({ length: 2000 }, (_, i) => i).filter(bad).map((i) => `r${i}`).sort());
      expect(dead.every((d) => d.reason.status === 400 && d.reason.answer === "error: a marked record")).toBe(true);
      const text = await metrics.registry.metrics();
      expect(text).toContain("dnsgeo_forward_dead_letter_records_total 20");
      expect(text).toMatch(/dnsgeo_forward_requests_total\{class="4xx"\} \d+/);
    } finally {
      await f.close();
      await hop.close();
    }
  });

  it("answers unavailable, writing nothing, when the refused records do not fit in the dead-letter file", async () => {
    // Prepare: a dead-letter file of 100 bytes
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-fwd-"));
    const hop = await startHop({ maxBody: 1 << 30, refuse: (r) => r.bad === true });
    const cfg = loadConfig({ overrides: { data_dir: dir, forward: { url: hop.url, dead_letter: { max_bytes: 100 } } } });
    const dl = new DeadLetterFile(deadLetterPath(cfg), cfg.forward.dead_letter.max_bytes);
    const f = new Forwarder(cfg.forward, { logger: silentLogger(), deadLetter: dl });
    try {
      // Act
      const r = await f.send(records(10, 50, (i) => i === 3), "ndjson");
      // Assess
      expect(r).toMatchObject({ ok: false, kind: "unavailable" });
      expect(r.ok ? "" : r.detail).toContain("dead-letter file is full");
      expect(await dl.size()).toBe(0);
    } finally {
      await f.close();
      await hop.close();
    }
  });
});
