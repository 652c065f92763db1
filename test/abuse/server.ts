/**
 * The abuse suite's moving parts: the built server as a child process (`node
 * dist/src/main.js serve`, so the RSS sampled is the server's own), a /livez prober in
 * a process of its own (so the attack clients' work in the test process does not
 * delay its clock), and the results table.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServe } from "../helpers/cli.js";

/** `DNSGEO_ABUSE_SCALE=full` (npm run test:abuse) or small (npm test). */
export const FULL = process.env.DNSGEO_ABUSE_SCALE === "full";


/** The token every authorised client (the shipper, most attackers) sends. */
export const TOKEN = "abuse-suite-token-0123456789";

/** True where the server's RSS can be read (Linux /proc). */
export const CAN_SAMPLE_RSS = existsSync("/proc/self/status");

export interface Server {
  http: string;
  grpc: string;
  /** Highest RSS seen so far, MiB. */
  peakRssMiB(): number;
  /** True while the process runs. */
  alive(): boolean;
  /** stderr lines (pino JSON) so far. */
  logLines(): string[];
  stop(): Promise<void>;
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Starts `dnsgeo serve` with a token, offline data only, on free ports; `env` adds or overrides DNSGEO_* variables. */
export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  let peak = 0;
  let sampler: NodeJS.Timeout | undefined;
  const serve = await startServe(
    Object.assign(
      {
        DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-abuse-")),
        DNSGEO_HTTP_PORT: "0",
        DNSGEO_GRPC_PORT: "0",
        DNSGEO_IPAPI_ENABLED: "false",
        DNSGEO_AUTH_TOKEN: TOKEN,
      },
      env,
    ),
    {
      onSpawn: (child) => {
        sampler = setInterval(() => {
          if (child.pid !== undefined && child.exitCode === null) peak = Math.max(peak, rssMiB(child.pid));
        }, 50);
      },
    },
  );
  const alive = (): boolean => serve.child.exitCode === null && serve.child.signalCode === null;
  return {
    http: `http://${serve.http}`,
    grpc: serve.grpc ?? "",
    peakRssMiB: () => peak,
    alive,
    logLines: () => serve.log().split("\n").filter((l) => l !== ""),
    async stop() {
      clearInterval(sampler);
      const killer = setTimeout(() => serve.child.kill("SIGKILL"), 15_000);
      await serve.stop();
      clearTimeout(killer);
    },
  };
}

/**
 * The prober, run as plain JavaScript in its own process: GET /livez every 50 ms, each
 * on a new connection as a Kubernetes probe makes it (so the connection cap's room for
 * ops routes is what it meets), with a timeout; one line per probe on stdout: "<ms>" for a
 * 200, "fail" otherwise.
 */
const PROBE_JS = `
const http = require("node:http");
const url = process.argv[1];
const timeout = Number(process.argv[2]);
const { performance } = require("node:perf_hooks");
function once() {
  const t = performance.now();
  const req = http.get(url, { agent: false, timeout }, (res) => {
    res.resume();
    res.on("end", () => { process.stdout.write((res.statusCode === 200 ? (performance.now() - t).toFixed(2) : "fail") + "\\n"); setTimeout(once, 50); });
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", () => { process.stdout.write("fail\\n"); setTimeout(once, 50); });
}
once();
`;

export interface Prober {
  /** Latencies of answered probes, milliseconds. */
  latencies: number[];
  /** Probes not answered 200 within 2 s. */
  failures(): number;
  stop(): Promise<void>;
}

/** `timeoutMs`: a probe not answered within it counts as failed. */
export function startProber(httpUrl: string, timeoutMs: number): Prober {
  const child = spawn(process.execPath, ["-e", PROBE_JS, `${httpUrl}/livez`, String(timeoutMs)], { stdio: ["ignore", "pipe", "ignore"] });
  const latencies: number[] = [];
  let failures = 0;
  let partial = "";
  child.stdout?.on("data", (b: Buffer) => {
    partial += b.toString("utf8");
    const parts = partial.split("\n");
    partial = parts.pop() ?? "";
    for (const p of parts) {
      if (p === "fail") failures++;
      else if (p !== "") latencies.push(Number(p));
    }
  });
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    latencies,
    failures: () => failures,
    async stop() {
      child.kill("SIGTERM");
      await done;
    },
  };
}

/**
 * What the server's own event loop went through, from its `/metrics` (prom-client's default
 * Node metrics): the loop delay since the last scrape (the histogram is reset at each
 * scrape) and its major collections. Read once as a row starts and once as it ends, it
 * tells a slow probe that waited on the server's loop from one that waited for a CPU.
 */
export interface LoopReading {
  delayP99Ms: number;
  delayMaxMs: number;
  /** Major GCs so far, and how many of them took over 100 ms. */
  majorGcs: number;
  majorGcsOver100ms: number;
}

export async function readLoop(httpUrl: string): Promise<LoopReading> {
  // A scrape the attack kept from being answered reads as NaN ("?" in the table), not as a failed row.
  const text = await fetch(`${httpUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5000) })
    .then((res) => res.text())
    .catch(() => "");
  const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
  const majors = value(/^dnsgeo_nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m);
  const fast = value(/^dnsgeo_nodejs_gc_duration_seconds_bucket\{le="0\.1",kind="major"\} (\S+)$/m);
  return {
    delayP99Ms: value(/^dnsgeo_nodejs_eventloop_lag_p99_seconds (\S+)$/m) * 1000,
    delayMaxMs: value(/^dnsgeo_nodejs_eventloop_lag_max_seconds (\S+)$/m) * 1000,
    majorGcs: Number.isNaN(majors) ? 0 : majors,
    majorGcsOver100ms: Number.isNaN(majors) ? 0 : majors - fast,
  };
}

export interface Row {
  attack: string;
  sent: number;
  acknowledged: number;
  lost: number;
  shipperP99: number;
  peakRssMiB: number;
  livezP99: number;
  livezFailures: number;
  livezProbes: number;
  /** The server's loop during the row: delay p99 and max, major GCs (over 100 ms). */
  loop: { p99: number; max: number; majorGcs: number; slowGcs: number };
  alive: boolean;
  notes: string;
}

const rows: Row[] = [];

export function addRow(r: Row): void {
  rows.push(r);
}

/** Writes the markdown table to the OS temp dir and prints it; returns the file path. */
export function writeTable(note: string): string {
  const file = join(tmpdir(), `dnsgeo-abuse-${FULL ? "full" : "small"}.md`);
  const mark = (ok: boolean): string => (ok ? "" : " ✗");
  const ms = (v: number): string => (Number.isNaN(v) ? "?" : v.toFixed(0));
  const lines = [
    `Abuse suite (${FULL ? "full" : "small"} scale). Goals: 0 lost, the process never dies, peak RSS < 1 GB, /livez p99 < 100 ms, shipper p99 < 1 s (✗: missed)`,
    "",
    "| attack | shipper sent | acknowledged | lost | shipper p99 ms | server peak RSS MB | /livez p99 ms | /livez answered | server loop delay p99 / max ms, major GCs (> 100 ms) | alive | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.attack} | ${r.sent} | ${r.acknowledged} | ${r.lost}${mark(r.lost === 0)} | ${r.shipperP99.toFixed(0)}${mark(r.shipperP99 < 1000)} | ${r.peakRssMiB.toFixed(0)}${mark(r.peakRssMiB < 1024)} | ${r.livezP99.toFixed(0)}${mark(r.livezP99 < 100)} | ${r.livezFailures === 0 ? `all ${r.livezProbes}` : `${r.livezFailures} of ${r.livezProbes + r.livezFailures} failed ✗`} | ${ms(r.loop.p99)} / ${ms(r.loop.max)}, ${r.loop.majorGcs} (${r.loop.slowGcs}) | ${r.alive ? "yes" : "no ✗"} | ${r.notes} |`,
    ),
    "",
    note,
    "",
  ];
  writeFileSync(file, lines.join("\n"));
  return file;
}
