/**
 * The real Fluent Bit for tests: found through `FLUENT_BIT` or
 * `../shared/tools/fluent-bit/bin/fluent-bit` beside the repository, started with a
 * config written into its own temp dir, waited for, stopped with SIGTERM or SIGKILL
 * and started again with the same config. Also a real `dnsgeo serve` child and
 * readers for what Fluent Bit's `out_file` and `stdout` outputs wrote.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, cleanEnv, startServe } from "./cli.js";

/** Repository root. */
export { ROOT };

/** Path of the Fluent Bit binary, or undefined when there is none. */
export const FLUENT_BIT: string | undefined = (() => {
  const candidates = [process.env.FLUENT_BIT, fileURLToPath(new URL("../../../shared/tools/fluent-bit/bin/fluent-bit", import.meta.url))];
  return candidates.find((p): p is string => typeof p === "string" && p !== "" && existsSync(p));
})();

/** Why Fluent Bit tests skip, or "" when the binary is there. */
export const FLUENT_BIT_SKIP: string = FLUENT_BIT
  ? ""
  : "no Fluent Bit binary: set FLUENT_BIT or put one at ../shared/tools/fluent-bit/bin/fluent-bit beside the repository";

type Obj = Record<string, unknown>;

export { freePort } from "./ports.js";

/** Resolves once something accepts connections on 127.0.0.1:port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
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

/** Children started here; killed when the test process exits, so a timed-out test leaves none running. */
const LIVE = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of LIVE) c.kill("SIGKILL");
});

function track(child: ChildProcess): void {
  LIVE.add(child);
  child.on("exit", () => LIVE.delete(child));
}

export interface FluentBitOptions {
  /** The config text, as written. */
  config: string;
  /** `yaml` (written as fluent-bit.yaml) or `classic` (fluent-bit.conf). */
  format: "yaml" | "classic";
  /** Other files written next to the config (name → text), e.g. a parsers file. */
  files?: Record<string, string>;
  /** Directory for the config and the log; a new temp dir when absent. */
  dir?: string;
  /** Ports that must accept connections (e.g. in_http's) before the process counts as ready, after the engine's start line in the log. */
  readyPorts?: number[];
  env?: Record<string, string>;
  /** Working directory of the process; the config's directory when absent. */
  cwd?: string;
}

/** One Fluent Bit process (and its restarts with the same config). */
export class FluentBit {
  readonly dir: string;
  readonly configPath: string;
  /** Everything the process wrote to stdout and stderr, across restarts (also in `fluent-bit.log` in `dir`). */
  output = "";
  /** Exit codes (or signal names) of the runs that ended. */
  readonly exits: Array<number | string> = [];
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly opts: FluentBitOptions) {
    if (!FLUENT_BIT) throw new Error(FLUENT_BIT_SKIP);
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), "dnsgeo-fluent-bit-"));
    mkdirSync(this.dir, { recursive: true });
    this.configPath = join(this.dir, opts.format === "yaml" ? "fluent-bit.yaml" : "fluent-bit.conf");
    writeFileSync(this.configPath, opts.config);
    for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(this.dir, name), text);
  }

  /** Starts the process and waits until it is ready. */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.child) throw new Error("Fluent Bit is already running");
    const from = this.output.length;
    const child = spawn(FLUENT_BIT as string, ["-c", this.configPath], {
      cwd: this.opts.cwd ?? this.dir,
      env: cleanEnv(this.opts.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    track(child);
    const logFile = join(this.dir, "fluent-bit.log");
    const onData = (b: Buffer): void => {
      this.output += b.toString("utf8");
      appendFileSync(logFile, b);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise<void>((resolve) =>
      child.on("exit", (code, signal) => {
        this.exits.push(code ?? signal ?? "unknown");
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
    const until = Date.now() + timeoutMs;
    let gone = false;
    void this.exited.then(() => (gone = true));
    const started = (): boolean => this.output.indexOf("[sp] stream processor started", from) >= 0;
    while (!started()) {
      if (gone) throw new Error(`Fluent Bit exited before it was ready:\n${this.output.slice(from)}`);
      if (Date.now() > until) {
        child.kill("SIGKILL");
        throw new Error(`Fluent Bit not ready after ${timeoutMs} ms:\n${this.output.slice(from)}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const p of this.opts.readyPorts ?? []) await waitForPort(p, Math.max(1000, until - Date.now()));
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Sends `signal` and waits for the exit. After SIGTERM Fluent Bit flushes what it can
   * within its grace period (5 s by default); `timeoutMs` later it gets SIGKILL.
   */
  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM", timeoutMs = 15_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Starts again with the same config, directory and working directory. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Lines of the output that are JSON objects (the `stdout` output with `format json_lines`). */
  jsonLines(): Obj[] {
    const out: Obj[] = [];
    for (const line of this.output.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Obj);
      } catch {
        // A line cut by a chunk boundary of the pipe is whole by the time the process exits.
      }
    }
    return out;
  }
}

/** Writes the config and starts Fluent Bit. */
export async function startFluentBit(opts: FluentBitOptions): Promise<FluentBit> {
  const fb = new FluentBit(opts);
  await fb.start();
  return fb;
}

/** `fluent-bit --dry-run -c <config>` from `cwd`: its exit code and output. */
export function fluentBitDryRun(config: string, cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(FLUENT_BIT as string, ["--dry-run", "-c", config], { cwd, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

/**
 * Records in the files of an `out_file` folder written with `format: plain` (one JSON
 * object per line, one file per tag). A partly written last line is left out.
 */
export function readOutFile(dir: string): Obj[] {
  if (!existsSync(dir)) return [];
  const out: Obj[] = [];
  for (const name of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, name), "utf8").split("\n")) {
      if (line.trim() === "") continue;
      try {
        out.push(JSON.parse(line) as Obj);
      } catch {
        // A line still being written.
      }
    }
  }
  return out;
}

/**
 * Follows the files of an `out_file` folder (`format: plain`) as they grow, so a large
 * run is read once, not re-read on every poll. `poll()` hands each new complete line,
 * parsed, to `onRecord`; lines that are not JSON (a line cut by a crash and continued
 * after a restart) are counted in `broken`, and a whole record behind the cut is still handed on.
 */
export class OutFileFollower {
  /** Lines that were not JSON. */
  broken = 0;
  /** Whole records found behind the cut-off start of a broken line. */
  recovered = 0;
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, Buffer>();

  constructor(
    private readonly dir: string,
    private readonly onRecord: (r: Obj) => void,
  ) {}

  poll(): void {
    if (!existsSync(this.dir)) return;
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name);
      const from = this.offsets.get(path) ?? 0;
      const size = statSync(path).size;
      if (size <= from) continue;
      const fd = openSync(path, "r");
      const buf = Buffer.alloc(size - from);
      try {
        readSync(fd, buf, 0, buf.length, from);
      } finally {
        closeSync(fd);
      }
      this.offsets.set(path, size);
      // Cut at the last newline byte, so a multi-byte character is never split.
      const bytes = Buffer.concat([this.partial.get(path) ?? Buffer.alloc(0), buf]);
      const cut = bytes.lastIndexOf(0x0a);
      this.partial.set(path, bytes.subarray(cut + 1));
      for (const line of bytes.subarray(0, cut + 1).toString("utf8").split("\n")) {
        if (line.trim() === "") continue;
        let r: Obj | undefined;
        try {
          r = JSON.parse(line) as Obj;
        } catch {
          // out_file cut by a kill leaves a line without its end, and after the restart
          // the next record is written right behind it: that record is still whole.
          this.broken++;
          r = wholeTail(line);
          if (r) this.recovered++;
        }
        if (r) this.onRecord(r);
      }
    }
  }
}

/** The longest whole JSON object that ends `line` and starts after its first character, if any. */
function wholeTail(line: string): Obj | undefined {
  for (let at = line.indexOf("{", 1); at > 0; at = line.indexOf("{", at + 1)) {
    try {
      const v = JSON.parse(line.slice(at)) as unknown;
      if (v && typeof v === "object" && !Array.isArray(v)) return v as Obj;
    } catch {
      // Not a start of the object.
    }
  }
  return undefined;
}

/** How many times each id occurs among `records` (ids read at `key`). */
export function countIds(records: readonly Obj[], key = "rid"): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of records) {
    const id = r[key];
    if (typeof id === "string") m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

/** Of `sent`, which ids are missing from `counts` and which arrived more than once. */
export function tally(sent: readonly string[], counts: Map<string, number>): { arrived: number; missing: string[]; duplicated: string[]; unknown: number } {
  const missing: string[] = [];
  const duplicated: string[] = [];
  const want = new Set(sent);
  let arrived = 0;
  for (const id of sent) {
    const n = counts.get(id) ?? 0;
    if (n === 0) missing.push(id);
    else arrived++;
    if (n > 1) duplicated.push(id);
  }
  let unknown = 0;
  for (const id of counts.keys()) if (!want.has(id)) unknown++;
  return { arrived, missing, duplicated, unknown };
}

/** A `dnsgeo serve` child process (the built CLI). */
export interface DnsgeoChild {
  /** host:port of its HTTP listener. */
  http: string;
  /** Its log (stderr), NDJSON. */
  log(): string;
  /** Sends `signal` and waits for the exit code. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<number | null>;
}

/**
 * Starts `node dist/src/main.js serve` with DNSGEO_CONFIG=`configFile` and `env` on
 * top of a DNSGEO-free environment; resolves once it logs "listening".
 */
export async function startDnsgeo(configFile: string, env: Record<string, string> = {}): Promise<DnsgeoChild> {
  const s = await startServe(Object.assign({ DNSGEO_CONFIG: configFile }, env), { onSpawn: track });
  return { http: s.http, log: s.log, stop: s.stop };
}

/** Waits until `check()` is true, polling every `everyMs`; throws with `what` after `timeoutMs`. */
export async function waitUntil(check: () => boolean, timeoutMs: number, what: string, everyMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
