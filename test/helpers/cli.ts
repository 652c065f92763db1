/** Runs the built CLI (`dist/`, built by `npm test`'s pretest) as a real child process. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const MAIN = fileURLToPath(new URL("../../dist/src/main.js", import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `dnsgeo ARGS` with `env` added to a clean DNSGEO-free environment. */
export function runCli(args: string[], opts: { env?: Record<string, string>; stdin?: Buffer | string; timeoutMs?: number } = {}): Promise<CliRun> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DNSGEO_")) env[k] = v;
  Object.assign(env, { DNSGEO_LOG_LEVEL: "warn" }, opts.env ?? {});
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.stdin ?? "");
  });
}

/** The test runner's environment minus DNSGEO_ variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DNSGEO_")) env[k] = v;
  return Object.assign(env, extra);
}

/** A running `dnsgeo serve` child process. */
export interface ServeChild {
  child: ChildProcess;
  /** host:port of the HTTP listener. */
  http: string;
  /** host:port of the gRPC listener, when it is on. */
  grpc: string | undefined;
  /** The "listening" log line, parsed. */
  listening: Record<string, unknown>;
  /** Its stderr so far: the NDJSON log. */
  log(): string;
  /** Resolves with the exit code once it has exited. */
  exited: Promise<number | null>;
  /** Sends `signal` unless it has exited already, and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServeOptions {
  /** The program to run instead of `node dist/src/main.js` (an installed package's bin). */
  bin?: string;
  /** Working folder (the repository by default). */
  cwd?: string;
  /** How long it may take to log "listening" before it is killed; 60 s by default. */
  readyTimeoutMs?: number;
  /** Called with the child as soon as it is spawned (to sample its memory from the start). */
  onSpawn?: (child: ChildProcess) => void;
}

/**
 * Starts `dnsgeo serve` with `env` on top of a DNSGEO-free environment (log level info
 * unless `env` says otherwise) and resolves once it logs "listening". A start that
 * never gets ready is killed; a running one is left alone however long the test runs.
 */
export async function startServe(env: Record<string, string>, opts: ServeOptions = {}): Promise<ServeChild> {
  const [cmd, args] = opts.bin ? [opts.bin, ["serve"]] : [process.execPath, [MAIN, "serve"]];
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: cleanEnv(Object.assign({ DNSGEO_LOG_LEVEL: "info" }, env)), stdio: ["ignore", "ignore", "pipe"] });
  opts.onSpawn?.(child);
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const readyMs = opts.readyTimeoutMs ?? 60_000;
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let ready = false;
    child.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
      if (ready) return;
      for (const line of stderr.split("\n")) {
        if (!line.startsWith("{")) continue;
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          if (o.msg === "listening" && typeof o.http === "string") {
            ready = true;
            resolve(o);
          }
        } catch {
          // A line not yet complete.
        }
      }
    });
    void exited.then((code) => reject(new Error(`dnsgeo serve exited ${String(code)} before listening: ${stderr}`)));
    setTimeout(() => {
      if (ready) return;
      child.kill("SIGKILL");
      reject(new Error(`dnsgeo serve did not log "listening" (at log level info) within ${readyMs} ms: ${stderr}`));
    }, readyMs).unref();
  });
  return {
    child,
    http: listening.http as string,
    grpc: typeof listening.grpc === "string" ? listening.grpc : undefined,
    listening,
    log: () => stderr,
    exited,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
