/**
 * The fault suite's moving parts: a switchable DynamoDB proxy in front of dynalite
 * (pass / stopped / hung / throttle), a next-hop receiver counting record ids
 * (ok / down / slow / 500), the whole dnsgeo stack started in-process, and the
 * results table.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../../src/app.js";
import { startServe, type ServeHandle } from "../../src/cli/serve.js";
import { loadConfig, type ConfigInput } from "../../src/config.js";
import { createDynamoClient } from "../../src/lookup/dynamodb-tier.js";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { FAKE_CREDENTIALS, startDynalite, type Dynalite } from "../helpers/dynalite.js";
import { startFakeIpApi, type FakeIpApi } from "../helpers/fake-ipapi.js";
import { quantile, type ShipperResult } from "../helpers/shipper.js";

/** `DNSGEO_FAULTS_SCALE=full` (npm run test:faults) or small (npm test). */
export const FULL = process.env.DNSGEO_FAULTS_SCALE === "full";

/** Shipper sizes per scale. */
export const LOAD = FULL ? { records: 20_000, batchSize: 200, concurrency: 8, ipPool: 5000 } : { records: 600, batchSize: 50, concurrency: 4, ipPool: 400 };

export const DEADLINE_MS = 100;

async function listenOn(server: Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** A server that can stop listening and start again on the same port. */
class Switchable {
  readonly sockets = new Set<Socket>();
  readonly held = new Set<ServerResponse>();
  port = 0;
  constructor(readonly server: Server) {
    server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => this.sockets.delete(s));
    });
  }
  async start(): Promise<void> {
    this.port = await listenOn(this.server, this.port);
  }
  release(): void {
    for (const r of this.held) r.destroy();
    this.held.clear();
  }
  async stop(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export type DynamoMode = "pass" | "stopped" | "hung" | "throttle";

export interface DynamoProxy {
  endpoint: string;
  setMode(m: DynamoMode): Promise<void>;
  close(): Promise<void>;
}

/** An HTTP proxy to dynalite whose behaviour can be switched. */
export async function startDynamoProxy(upstream: string): Promise<DynamoProxy> {
  let mode: DynamoMode = "pass";
  const up = new URL(upstream);
  let sw!: Switchable;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (mode === "hung") {
      req.resume();
      sw.held.add(res);
      return;
    }
    if (mode === "throttle") {
      req.resume();
      req.on("end", () => {
        res.writeHead(400, { "content-type": "application/x-amz-json-1.0" });
        res.end(JSON.stringify({ __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", message: "throughput exceeded" }));
      });
      return;
    }
    const p = httpRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (pr) => {
      res.writeHead(pr.statusCode ?? 502, pr.headers);
      pr.pipe(res);
    });
    p.on("error", () => res.destroy());
    req.pipe(p);
  });
  sw = new Switchable(server);
  await sw.start();
  return {
    endpoint: `http://127.0.0.1:${sw.port}`,
    async setMode(m) {
      if (m === mode) return;
      if (mode === "stopped") await sw.start();
      if (m === "stopped") await sw.stop();
      if (mode === "hung") sw.release();
      mode = m;
    },
    close: () => sw.stop(),
  };
}

export type ReceiverMode = "ok" | "down" | "slow" | "500";

export interface Receiver {
  url: string;
  /** Times each record id was received in a 2xx-answered request. */
  readonly got: Map<string, number>;
  requests: number;
  setMode(m: ReceiverMode, delayMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The next hop for forward mode: counts record ids (by `rid`) of the batches it accepted. */
export async function startReceiver(): Promise<Receiver> {
  let mode: ReceiverMode = "ok";
  let delay = 300;
  const got = new Map<string, number>();
  const r: Receiver = {
    url: "",
    got,
    requests: 0,
    async setMode(m, d) {
      if (d !== undefined) delay = d;
      if (m === mode) return;
      if (mode === "down") await sw.start();
      if (m === "down") await sw.stop();
      mode = m;
    },
    close: () => sw.stop(),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      r.requests++;
      if (mode === "500") {
        res.writeHead(500).end("boom");
        return;
      }
      const answer = (): void => {
        for (const line of Buffer.concat(chunks).toString("utf8").split("\n")) {
          if (line.trim() === "") continue;
          const id = (JSON.parse(line) as { rid?: string }).rid;
          if (id) got.set(id, (got.get(id) ?? 0) + 1);
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      };
      if (mode === "slow") setTimeout(answer, delay);
      else answer();
    });
  });
  const sw = new Switchable(server);
  await sw.start();
  r.url = `http://127.0.0.1:${sw.port}/in`;
  return r;
}

let dynalite: Dynalite | undefined;

/** One dynalite for the whole file. */
export async function sharedDynalite(): Promise<Dynalite> {
  dynalite ??= await startDynalite();
  return dynalite;
}

export async function closeSharedDynalite(): Promise<void> {
  await dynalite?.close();
  dynalite = undefined;
}

export interface Stack {
  app: App;
  serve: ServeHandle;
  url: string;
  fake: FakeIpApi;
  proxy: DynamoProxy;
  receiver?: Receiver;
  dataDir: string;
  close(): Promise<void>;
}

/** Test config: SQLite in `dataDir`, DynamoDB through the proxy, ip-api at the fake. */
export function stackConfig(dataDir: string, fake: FakeIpApi, table: string, proxy: DynamoProxy, overrides: ConfigInput = {}): ConfigInput {
  const base: ConfigInput = {
    data_dir: dataDir,
    http: { port: 0, max_inflight_requests: 64 },
    grpc: { port: 0 },
    lookup: { deadline_ms: DEADLINE_MS },
    dynamodb: { table, endpoint: proxy.endpoint, region: "us-east-1", request_timeout_ms: 1000, connect_timeout_ms: 500 },
    ipapi: { url: fake.url, timeout_ms: 2000 },
    shutdown: { timeout_ms: 2000 },
    log: { level: "silent" },
  };
  return merge(base, overrides);
}

function merge(a: ConfigInput, b: ConfigInput): ConfigInput {
  const out: Record<string, unknown> = Object.assign({}, a);
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" ? merge(cur, v as ConfigInput) : v;
  }
  return out;
}

/** A DynamoDB client at `endpoint` with fake credentials passed in config (never the environment). */
export function dynamoClientFor(endpoint: string): DynamoDBDocumentClient {
  return createDynamoClient({ endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 500, requestTimeoutMs: 1000 });
}

export interface StackOptions {
  overrides?: ConfigInput;
  forward?: boolean;
  /** Runs before the app opens (corrupt the SQLite file, chmod the directory). */
  beforeOpen?: (dataDir: string) => void;
  /** Builds the app instead of createApp (tier-level faults). */
  makeApp?: (cfg: ReturnType<typeof loadConfig>, client: DynamoDBDocumentClient) => Promise<App>;
}

/** Starts fake ip-api, the DynamoDB proxy (+ table), optionally a receiver, and dnsgeo serve in-process. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const d = await sharedDynalite();
  const table = await d.newTable("dnsgeo-faults");
  const fake = await startFakeIpApi();
  const proxy = await startDynamoProxy(d.endpoint);
  const receiver = opts.forward ? await startReceiver() : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "dnsgeo-faults-"));
  opts.beforeOpen?.(dataDir);
  const fwd: ConfigInput = receiver ? { forward: { url: receiver.url, timeout_ms: 2000 } } : {};
  const cfg = loadConfig({ overrides: stackConfig(dataDir, fake, table, proxy, merge(fwd, opts.overrides ?? {})) });
  const client = dynamoClientFor(proxy.endpoint);
  const app = opts.makeApp ? await opts.makeApp(cfg, client) : await createApp(cfg, { dynamoClient: client });
  const serve = await startServe(app);
  return {
    app,
    serve,
    url: `http://${serve.httpAddress ?? ""}`,
    fake,
    proxy,
    ...(receiver ? { receiver } : {}),
    dataDir,
    async close() {
      await fake.setMode("normal");
      await proxy.setMode("pass");
      await serve.close();
      client.destroy();
      await proxy.close();
      await fake.close();
      await receiver?.close();
    },
  };
}

export interface Row {
  fault: string;
  sent: number;
  acknowledged: number;
  delivered: number | undefined;
  lost: number;
  errors: Record<string, number>;
  p99: number;
  max: number;
}

const rows: Row[] = [];

/** A table row from a shipper run (and the receiver in forward mode). */
export function recordRow(fault: string, r: ShipperResult, receiver?: Receiver): Row {
  const delivered = receiver ? r.ids.filter((id) => receiver.got.has(id)).length : undefined;
  const lost = Math.max(r.sent - r.acknowledged, delivered === undefined ? 0 : r.sent - delivered);
  const row: Row = { fault, sent: r.sent, acknowledged: r.acknowledged, delivered, lost, errors: r.errors, p99: quantile(r.latenciesMs, 0.99), max: quantile(r.latenciesMs, 1) };
  rows.push(row);
  return row;
}

function fmtErrors(e: Record<string, number>): string {
  const parts = Object.entries(e).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}×${n}`);
  return parts.length === 0 ? "none" : parts.join(", ");
}

/** Writes the markdown table to the OS temp dir and prints it; returns the file path. */
export function writeTable(note: string): string {
  const file = join(tmpdir(), `dnsgeo-faults-${FULL ? "full" : "small"}.md`);
  const lines = [
    `Fault suite (${FULL ? "full" : "small"} scale: ${LOAD.records} records in batches of ${LOAD.batchSize}, ${LOAD.concurrency} in flight; lookup.deadline_ms ${DEADLINE_MS})`,
    "",
    "| fault | sent | acknowledged | delivered | lost | shipper-visible errors | p99 ms | max ms |",
    "|---|---:|---:|---:|---:|---|---:|---:|",
    ...rows.map((r) => `| ${r.fault} | ${r.sent} | ${r.acknowledged} | ${r.delivered ?? "–"} | ${r.lost} | ${fmtErrors(r.errors)} | ${r.p99.toFixed(0)} | ${r.max.toFixed(0)} |`),
    "",
    note,
    "",
  ];
  writeFileSync(file, lines.join("\n"));
  console.log(lines.join("\n"));
  return file;
}

/** A table row for a scenario that could not run here, with the reason. */
export function noteSkip(fault: string, reason: string): void {
  rows.push({ fault: `${fault} (skipped: ${reason})`, sent: 0, acknowledged: 0, delivered: undefined, lost: 0, errors: {}, p99: 0, max: 0 });
}
