/**
 * End to end, the way the shippers really talk: bytes on the wire exactly as
 * Fluent Bit's `out_http` and Vector's `http` sink send them (header order,
 * User-Agent, framing, gzip) reach dnsgeo's `/v1/forward`, configured from the
 * examples' own dnsgeo.yaml, and the next hop must get every record, enriched:
 * the real Fluent Bit `in_http`, and for Vector a receiver that behaves like its
 * `http_server` source (Vector itself cannot run where these tests run). The real
 * `out_http` in front of dnsgeo runs in test/integration/fluent-bit/.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { parse as parseYaml } from "yaml";
import type { ConfigInput } from "../../src/config.js";
import { ROUTE53_LINES, startHarness, type Harness } from "./transport/harness.js";
import { FLUENT_BIT_SKIP, freePort, readOutFile, startFluentBit, waitUntil, type FluentBit } from "../helpers/fluent-bit.js";

type Obj = Record<string, unknown>;

interface Received {
  headers: http.IncomingHttpHeaders;
  records: Obj[];
}

interface Receiver {
  /** URL dnsgeo forwards to. */
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/**
 * A next hop on 127.0.0.1:0 that judges a request as Vector's `http_server` source with
 * `decoding.codec: json` and `framing.method: newline_delimited` does: newline-delimited
 * JSON whatever the Content-Type, `Content-Encoding: gzip` decompressed, success 200.
 * An imitation because no Vector binary is available where these tests run; Fluent Bit's
 * `in_http` is the real one below.
 */
async function startVectorReceiver(path: string): Promise<Receiver> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      const text = body.toString("utf8");
      if (req.method !== "POST" || req.url !== path) return void res.writeHead(404).end();
      let records: Obj[];
      try {
        records = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Obj);
      } catch {
        return void res.writeHead(400).end("bad json");
      }
      received.push({ headers: req.headers, records });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes one HTTP/1.1 request byte for byte (header order and case as given) and reads the answer. */
function rawRequest(addr: string, head: string[], body: Buffer): Promise<RawResponse> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, host);
    let buf = Buffer.alloc(0);
    sock.on("error", reject);
    sock.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number((lines[0] as string).split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
      const len = Number(headers["content-length"] ?? 0);
      if (buf.length < end + 4 + len) return;
      sock.end();
      resolve({ status, headers, body: buf.subarray(end + 4, end + 4 + len).toString("utf8") });
    });
    sock.write(Buffer.concat([Buffer.from(head.join("\r\n") + "\r\n\r\n", "latin1"), body]));
  });
}

/** The example's dnsgeo.yaml `forward` section, pointed at `url`. */
function exampleForward(example: string, url: string): ConfigInput {
  const doc = parseYaml(readFileSync(new URL(`../../examples/${example}/dnsgeo.yaml`, import.meta.url), "utf8")) as { forward: Obj; output?: Obj };
  return { forward: Object.assign({}, doc.forward, { url }), output: doc.output };
}

/** Route 53 sample records, each marked with its index in `n`. */
const RECORDS: Obj[] = ROUTE53_LINES.map((l, n) => Object.assign(JSON.parse(l) as Obj, { n }));

/** Records whose answers hold a public IP: these must come back with geo data. */
const PUBLIC = new Set(RECORDS.filter((r) => JSON.stringify(r.answers ?? []).match(/"Rdata":"(13\.107|204\.79|2606:4700|8\.8\.)/)).map((r) => r.n as number));

function assessEnriched(records: Obj[]): void {
  expect(records.map((r) => r.n).sort()).toEqual(RECORDS.map((r) => r.n).sort());
  expect(PUBLIC.size).toBeGreaterThan(0);
  for (const r of records) {
    const status = (r.dnsgeo as Obj | undefined)?.status;
    expect(["enriched", "partial", "skipped"], `record ${String(r.n)}`).toContain(status);
    if (PUBLIC.has(r.n as number)) {
      expect(["enriched", "partial"]).toContain(status);
      const dest = r.destination as Obj;
      expect(dest.geo, `record ${String(r.n)}`).toHaveProperty("location.lat");
      expect(dest.geo).toHaveProperty("country_iso_code");
      expect((dest.as as Obj).number).toEqual(expect.any(Number));
    }
    // Original fields are kept as they came.
    const orig = RECORDS[r.n as number] as Obj;
    expect(r.query_name).toBe(orig.query_name);
    expect(r.answers).toEqual(orig.answers);
  }
}

describe.skipIf(FLUENT_BIT_SKIP !== "")(`Fluent Bit out_http → dnsgeo /v1/forward → the real Fluent Bit in_http${FLUENT_BIT_SKIP ? ` (skipped: ${FLUENT_BIT_SKIP})` : ""}`, () => {
  let nextHop: FluentBit;
  let url: string;
  let outDir: string;
  let h: Harness;
  beforeAll(async () => {
    // in_http at its defaults, writing what it takes to a file, one JSON object per line.
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-shippers-fb-"));
    outDir = join(dir, "out");
    mkdirSync(outDir);
    const port = await freePort();
    const config = ["service:", "  flush: 1", "pipeline:", "  inputs:", "    - name: http", "      listen: 127.0.0.1", `      port: ${port}`, "  outputs:", "    - name: file", '      match: "*"', `      path: ${outDir}`, "      format: plain", ""].join("\n");
    nextHop = await startFluentBit({ config, format: "yaml", dir: join(dir, "fluent-bit"), readyPorts: [port] });
    url = `http://127.0.0.1:${port}/dns/enriched`;
    h = await startHarness(exampleForward("fluent-bit", url));
  });
  afterAll(async () => {
    await h?.close();
    await nextHop?.stop();
  });

  /** What `out_http` with `format json_lines` and `compress gzip` puts on the wire. */
  function fluentBitRequest(addr: string, records: Obj[]): { head: string[]; body: Buffer } {
    // Each record gets the `date` key first (float epoch seconds); every line ends in \n.
    const lines = records.map((r, i) => JSON.stringify(Object.assign({ date: 1715677923.123456 + i }, r)) + "\n").join("");
    const body = gzipSync(Buffer.from(lines, "utf8"));
    const head = [
      "POST /v1/forward HTTP/1.1",
      `Host: ${addr}`,
      `Content-Length: ${body.length}`,
      "Content-Type: application/x-ndjson",
      "Content-Encoding: gzip",
      "User-Agent: Fluent-Bit",
    ];
    return { head, body };
  }

  it("acknowledges within out_http's success range only after in_http got every record, enriched", async () => {
    // Prepare
    const { head, body } = fluentBitRequest(h.serve.httpAddress as string, RECORDS);
    // Act
    const res = await rawRequest(h.serve.httpAddress as string, head, body);
    // Assess: out_http treats 200–205 as success; in_http took the batch (it refuses a wrong Content-Type or encoding).
    expect(res.status).toBeGreaterThanOrEqual(200);
    expect(res.status).toBeLessThanOrEqual(205);
    await waitUntil(() => readOutFile(outDir).length >= RECORDS.length, 15_000, "in_http's records in its output file");
    const got = readOutFile(outDir);
    assessEnriched(got);
    // Fluent Bit's own `date` key travels on untouched.
    for (const r of got) expect(r.date).toBeCloseTo(1715677923.123456 + (r.n as number), 5);
  });

  it("with the default NDJSON content type in_http refuses the batch, and dnsgeo keeps every record in its dead-letter file", async () => {
    // Prepare: the same dnsgeo config but without forward.content_type.
    const bad = exampleForward("fluent-bit", url);
    delete (bad.forward as Obj).content_type;
    const h2 = await startHarness(bad);
    const before = readOutFile(outDir).length;
    try {
      const { head, body } = fluentBitRequest(h2.serve.httpAddress as string, RECORDS);
      // Act
      const res = await rawRequest(h2.serve.httpAddress as string, head, body);
      // Assess
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ delivered: 0, dead_lettered: RECORDS.length });
      // A flush later, in_http's output holds nothing more.
      await new Promise((r) => setTimeout(r, 1500));
      expect(readOutFile(outDir).length).toBe(before);
    } finally {
      await h2.close();
    }
  });
});

describe("Vector http sink → dnsgeo /v1/forward → Vector http_server", () => {
  let rcv: Receiver;
  let h: Harness;
  beforeAll(async () => {
    rcv = await startVectorReceiver("/dns/enriched");
    h = await startHarness(exampleForward("vector", rcv.url));
  });
  afterAll(async () => {
    await h?.close();
    await rcv?.close();
  });

  it("answers 2xx only after the http_server source got every record, enriched", async () => {
    // Prepare: `encoding.codec: json` + `framing.method: newline_delimited` + `compression: gzip`.
    // The last event carries no trailing newline; hyper writes lower-case header names.
    const addr = h.serve.httpAddress as string;
    const body = gzipSync(Buffer.from(RECORDS.map((r) => JSON.stringify(r)).join("\n"), "utf8"));
    const head = [
      "POST /v1/forward HTTP/1.1",
      "content-type: application/x-ndjson",
      "content-encoding: gzip",
      "user-agent: Vector/0.49.0",
      "accept-encoding: identity",
      `host: ${addr}`,
      `content-length: ${body.length}`,
    ];
    // Act
    const res = await rawRequest(addr, head, body);
    // Assess
    expect(res.status).toBe(200);
    expect(rcv.received).toHaveLength(1);
    const got = rcv.received[0] as Received;
    expect(got.headers["content-encoding"]).toBe("gzip");
    assessEnriched(got.records);
  });
});
