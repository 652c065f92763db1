/**
 * A real `redis-server` (Debian's package) for tests: found on PATH (or
 * REDIS_SERVER), started on a free 127.0.0.1 port in its own temp dir with
 * persistence off, stopped and removed by `close()`. redis-server has no
 * "port 0", so a port is picked by binding 127.0.0.1:0 first and releasing it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./ports.js";

/** The redis-server binary, or undefined when this machine has none. */
export function findRedisServer(): string | undefined {
  const explicit = process.env.REDIS_SERVER;
  const candidates = explicit ? [explicit] : ["redis-server", "valkey-server"];
  for (const bin of candidates) {
    const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return bin;
  }
  return undefined;
}

/** One line for `describe.skipIf` when redis-server is absent. */
export const NO_REDIS_REASON = "redis-server not found on PATH (Debian package redis-server; test/setup/install-tools.sh installs it when it can)";

export { freePort };

export interface RedisServer {
  port: number;
  url: string;
  /** Stops the server (SIGTERM, then SIGKILL); it can be started again on the same port. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: persistence is off). */
  start(): Promise<void>;
  /** SIGSTOP: connections stay open and nothing is answered (a hung server) until `resume()`. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/**
 * Starts redis-server; `extraArgs` are appended to the command line (`--requirepass x`, …).
 * With `tls`, the picked port is the TLS port (`--port 0` turns plain TCP off, which
 * redis does support) and `extraArgs` must name the certificate files.
 */
export async function startRedisServer(bin: string, extraArgs: string[] = [], o: { tls?: boolean } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-redis-"));
  const port = await freePort();
  if (o.tls) {
    const i = extraArgs.indexOf("--tls-port");
    extraArgs = extraArgs.slice();
    if (i >= 0) extraArgs[i + 1] = String(port);
  }
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const args = ["--port", o.tls ? "0" : String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", ...extraArgs];
    const c = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    child = c;
    let stderr = "";
    c.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const until = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited ${c.exitCode}: ${stderr}`);
      if (await canConnect(port)) return;
      if (Date.now() > until) throw new Error(`redis-server did not listen on ${port}: ${stderr}`);
      await sleep(25);
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(t);
  };
  await start();
  return {
    port,
    url: `${o.tls ? "rediss" : "redis"}://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    async close() {
      child?.kill("SIGCONT");
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** A TCP server that accepts connections and never answers (a hung Redis). */
export async function startHangingServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
