/**
 * Serve scenarios, all in one run, batches of 100 Route 53 records whose IPs are
 * all cache hits (memory tier primed):
 * - HTTP POST /v1/enrich vs a plain node:http NDJSON echo server that parses and
 *   re-serialises every line (the least any transform in the path does);
 * - gRPC Enrich (unary) and EnrichStream (bidi) vs HTTP /v1/enrich, the load sent
 *   as pre-encoded gRPC frames over node:http2 (what h2load or ghz do); plus, as a
 *   report, Enrich with grpc-js as the client, whose CPU per call competes with the
 *   server for the same two cores;
 * - p99 latency at concurrency 1;
 * - concurrency 256 against the in-flight cap (default 64): p99 of accepted
 *   requests and the share refused with 503.
 * Servers run in this process; the load comes from a child process
 * (bench/serve-load.ts) so the server's event loop is not shared with the client.
 * Subjects are interleaved over rounds and the median taken; the goals are read on
 * records per second of this process's CPU time, wall-clock rates printed beside.
 */
import { fork, type ChildProcess } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createApp } from "../src/app.js";
import { startServe } from "../src/cli/serve.js";
import { loadConfig } from "../src/config.js";
import { cacheEntries } from "./data.js";
import type { LoadResult, LoadSetup, LoadTask, LoadTarget } from "./serve-load.js";
import type { ScenarioResult } from "./pipeline.js";
import { roundSpread } from "./measure.js";

const DISTINCT = 2000;
const BATCH = 100;
const CONCURRENCY = 8;
const ROUNDS = 7;
const ROUND_MS = 700;

function echoServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const lines = Buffer.concat(chunks).toString("utf8").split("\n");
      const out: string[] = [];
      for (const l of lines) if (l !== "") out.push(JSON.stringify(JSON.parse(l)));
      const body = Buffer.from(out.join("\n") + "\n");
      res.writeHead(200, { "content-type": "application/x-ndjson", "content-length": body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      }),
    ),
  );
}

class LoadChild {
  private readonly child: ChildProcess;
  constructor() {
    this.child = fork(fileURLToPath(new URL("./serve-load.js", import.meta.url)), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  }
  private ask<T>(msg: object, key: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMsg = (m: Record<string, unknown>): void => {
        this.child.off("message", onMsg);
        if (m.error) reject(new Error(String(m.error)));
        else resolve(m[key] as T);
      };
      this.child.on("message", onMsg);
      this.child.send(msg);
    });
  }
  setup(s: LoadSetup): Promise<unknown> {
    return this.ask({ setup: s }, "ready");
  }
  run(task: LoadTask): Promise<LoadResult> {
    return this.ask({ task }, "result");
  }
  close(): void {
    this.child.disconnect();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export async function benchServe(): Promise<ScenarioResult[]> {
  const cfg = loadConfig({
    overrides: {
      http: { port: 0 },
      grpc: { port: 0 },
      ipapi: { enabled: false },
      mmdb: { enabled: false },
      cache: { sqlite: { enabled: false } },
    },
  });
  const app = await createApp(cfg);
  await app.cache.set(cacheEntries(DISTINCT));
  const serve = await startServe(app);
  const echo = await echoServer();
  const load = new LoadChild();
  try {
    await load.setup({ echoUrl: echo.url, httpUrl: `http://${serve.httpAddress ?? ""}`, grpcAddress: serve.grpcAddress ?? "", batch: BATCH, distinct: DISTINCT });

    const targets: LoadTarget[] = ["echo", "http", "grpc-unary", "grpc-stream", "grpc-js-unary"];
    // Two rates per round: records per second of wall time, and records per second of
    // this process's CPU time (the servers run here; the load runs in a child). The
    // CPU rate is a server's capacity when it is saturated, and it does not move with
    // what else the shared cores are doing; the goals are read on it, as the
    // in-process benches do. Both are printed.
    const wall = new Map<LoadTarget, number[]>(targets.map((t) => [t, []]));
    const cpu = new Map<LoadTarget, number[]>(targets.map((t) => [t, []]));
    // Minor page faults of the server process per batch: writing answers into memory the
    // process has not touched lately costs a fault per page (see OutputBuffers).
    const faults = new Map<LoadTarget, { faults: number; batches: number }>(targets.map((t) => [t, { faults: 0, batches: 0 }]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const target of targets) {
        const c0 = process.cpuUsage();
        const f0 = process.resourceUsage().minorPageFault;
        const res = await load.run({ kind: "rate", target, ms: ROUND_MS, concurrency: CONCURRENCY });
        const c = process.cpuUsage(c0);
        const f = faults.get(target);
        if (f) {
          f.faults += process.resourceUsage().minorPageFault - f0;
          f.batches += res.records / BATCH;
        }
        wall.get(target)?.push((res.records * 1000) / res.elapsedMs);
        cpu.get(target)?.push((res.records * 1e6) / Math.max(1, c.user + c.system));
      }
    }
    const faultsPerBatch = (t: LoadTarget): string => {
      const f = faults.get(t);
      return f && f.batches > 0 ? (f.faults / f.batches).toFixed(1) : "–";
    };
    const rate = (t: LoadTarget): number => median(cpu.get(t) ?? []);
    const spread = (t: LoadTarget, base: LoadTarget): [number, number] => roundSpread(cpu.get(t) ?? [], cpu.get(base) ?? []);
    const wallRate = (t: LoadTarget): number => median(wall.get(t) ?? []);
    const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
    const wallNote = (t: LoadTarget, base: LoadTarget): string =>
      ` — wall clock: ${fmt(wallRate(t))}/s vs ${fmt(wallRate(base))}/s, ${(wallRate(t) / wallRate(base)).toFixed(2)}×; page faults per batch ${faultsPerBatch(t)} vs ${faultsPerBatch(base)}`;
    const c1Echo = await load.run({ kind: "latency", target: "echo", ms: 2000, concurrency: 1 });
    const c1 = await load.run({ kind: "latency", target: "http", ms: 2000, concurrency: 1 });
    const c256 = await load.run({ kind: "latency", target: "http", ms: 3000, concurrency: 256 });

    const ms = (x: number): string => x.toFixed(2);
    const httpRate = rate("http");
    const perS = (r: LoadResult): number => (r.records * 1000) / r.elapsedMs;
    return [
      { scenario: `serve: HTTP /v1/enrich, ${CONCURRENCY} concurrent, batches of ${BATCH} (records per server CPU-second${wallNote("http", "echo")})`, recordsPerS: httpRate, baseline: "node:http NDJSON echo (parse+stringify)", baselinePerS: rate("echo"), ratio: httpRate / rate("echo"), spread: spread("http", "echo"), goal: 0.9 },
      { scenario: `serve: gRPC Enrich (unary), ${CONCURRENCY} concurrent (per server CPU-second${wallNote("grpc-unary", "http")})`, recordsPerS: rate("grpc-unary"), baseline: "HTTP /v1/enrich", baselinePerS: httpRate, ratio: rate("grpc-unary") / httpRate, spread: spread("grpc-unary", "http"), goal: 0.6 },
      { scenario: `serve: gRPC EnrichStream, ${CONCURRENCY} streams (per server CPU-second${wallNote("grpc-stream", "http")})`, recordsPerS: rate("grpc-stream"), baseline: "HTTP /v1/enrich", baselinePerS: httpRate, ratio: rate("grpc-stream") / httpRate, spread: spread("grpc-stream", "http"), goal: 0.85 },
      { scenario: `serve: gRPC Enrich with a grpc-js client (one channel), ${CONCURRENCY} concurrent (per server CPU-second${wallNote("grpc-js-unary", "http")})`, recordsPerS: rate("grpc-js-unary"), baseline: "HTTP /v1/enrich", baselinePerS: httpRate, ratio: rate("grpc-js-unary") / httpRate, spread: spread("grpc-js-unary", "http") },
      {
        scenario: `serve: HTTP concurrency 1: p50 ${ms(c1.p50Ms)} ms, p99 ${ms(c1.p99Ms)} ms (echo p99 ${ms(c1Echo.p99Ms)} ms)`,
        recordsPerS: perS(c1),
        baseline: "echo, concurrency 1",
        baselinePerS: perS(c1Echo),
        ratio: perS(c1) / perS(c1Echo),
      },
      {
        scenario: `serve: HTTP concurrency 256, cap ${cfg.http.max_inflight_requests}: accepted p99 ${ms(c256.p99Ms)} ms, refused ${((100 * c256.refused) / Math.max(1, c256.accepted + c256.refused)).toFixed(1)}%`,
        recordsPerS: perS(c256),
        baseline: `HTTP /v1/enrich, ${CONCURRENCY} concurrent (wall clock)`,
        baselinePerS: wallRate("http"),
        ratio: perS(c256) / wallRate("http"),
      },
    ];
  } finally {
    load.close();
    await echo.close();
    await serve.close();
  }
}
