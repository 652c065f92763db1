import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { loadConfig, type ConfigInput } from "../../../src/config.js";
import { checkCommand, type CheckResult } from "../../../src/cli/check.js";
import { startDynalite, FAKE_CREDENTIALS, type Dynalite } from "../../helpers/dynalite.js";
import { startFakeIpApi, type FakeIpApi } from "../../helpers/fake-ipapi.js";
import { MAIN, runCli } from "../../helpers/cli.js";
import { NO_REDIS_REASON, findRedisServer, startRedisServer, type RedisServer } from "../../helpers/redis-server.js";
import { MmdbProvider } from "../../../src/lookup/mmdb-provider.js";


/** A next hop that answers like an HTTP input: 200 to POST, 204 to anything else; it counts methods. */
interface NextHop {
  url: string;
  methods: string[];
  close(): Promise<void>;
}

async function startNextHop(): Promise<NextHop> {
  const methods: string[] = [];
  const server: Server = createServer((req, res) => {
    methods.push(req.method ?? "");
    req.resume();
    req.on("end", () => {
      res.statusCode = req.method === "POST" ? 200 : 204;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ingest`,
    methods,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

let dyn: Dynalite;
let ipapi: FakeIpApi;
let hop: NextHop;
let table: string;
/** Held open for the file: the offline data is loaded once per process while a provider uses it, not once per check. */
let offline: MmdbProvider;
const redisBin = findRedisServer();
let redis: RedisServer | undefined;
/** Without redis-server the good setup has no Redis tier and that check is skipped (one line says why). */
if (!redisBin) console.log(`check tests: redis check against a real server skipped: ${NO_REDIS_REASON}`);
const POLICY_RULES = [{ name: "embargo", tag: "embargo", countries: ["KP", "IR"] }];

beforeAll(async () => {
  [dyn, ipapi, hop, redis, offline] = await Promise.all([
    startDynalite(),
    startFakeIpApi(),
    startNextHop(),
    redisBin ? startRedisServer(redisBin) : Promise.resolve(undefined),
    MmdbProvider.open({ ttlS: 3600 }),
  ]);
  table = await dyn.newTable("dnsgeo-check");
});
afterAll(async () => {
  offline.close();
  await Promise.all([dyn.close(), ipapi.close(), hop.close(), redis?.close()]);
});

function goodSetup(): ConfigInput {
  return {
    data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-check-")),
    forward: { url: hop.url },
    dynamodb: { table, endpoint: dyn.endpoint, region: "us-east-1" },
    ipapi: { url: ipapi.url },
    policy: { rules: POLICY_RULES },
    ...(redis ? { cache: { redis: { url: redis.url } } } : {}),
  };
}

function merge(a: ConfigInput, b: ConfigInput): ConfigInput {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && typeof prev === "object" && v && typeof v === "object" && !Array.isArray(v) ? { ...prev, ...v } : v;
  }
  return out;
}

/** Runs the check in this process (dynalite's client carries fake credentials) and reads its text lines back. */
async function check(overrides: ConfigInput, opts: { offline?: boolean } = {}): Promise<{ code: number; text: string; json: { ok: boolean; checks: CheckResult[] } }> {
  const cfgIn = merge(goodSetup(), overrides);
  const out = new PassThrough();
  let text = "";
  out.on("data", (b: Buffer) => (text += b.toString()));
  const code = await checkCommand(() => loadConfig({ overrides: cfgIn }), out, { offline: opts.offline === true, dynamoClient: dyn.client() });
  return { code, text, json: { ok: code === 0, checks: parseLines(text) } };
}

/** Parses the text output back into results, so the assertions below read the lines an operator reads. */
function parseLines(text: string): CheckResult[] {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const m = /^(ok  |FAIL|skip)  (\S+)\s+(.*)$/.exec(l);
      if (!m) throw new Error(`not a check line: ${l}`);
      const status = m[1] === "ok  " ? "pass" : m[1] === "FAIL" ? "fail" : "skip";
      return { name: m[2] as string, status, detail: m[3] as string, ms: 0 };
    });
}

const NAMES = ["config", "data_dir", "offline_data", "policy", "forward", "dynamodb", "redis", "ipapi"];
/** What the good setup gives each check: all pass, but redis is skipped on a machine without redis-server. */
const GOOD = (n: string): string => (n === "redis" && !redis ? "skip" : "pass");

const IS_ROOT = process.getuid?.() === 0;
/** The unprivileged user the read-only case runs as when the tests run as root. */
const NOBODY = 65534;
/** Whether nobody can read the built CLI (a checkout under a private home cannot be). */
const NOBODY_CAN_RUN =
  IS_ROOT && spawnSync(process.execPath, ["-e", `require("node:fs").accessSync(${JSON.stringify(MAIN)}, 4)`], { uid: NOBODY, gid: NOBODY }).status === 0;

describe("dnsgeo check", () => {
  it("against a good setup: one line per check, all pass, exit 0; one OPTIONS to the next hop and one ip-api batch", async () => {
    // Prepare
    const batches = ipapi.counts.batchRequests;
    const hopCalls = hop.methods.length;
    // Act
    const r = await check({});
    // Assess
    expect(r.code, r.text).toBe(0);
    expect(r.json.checks.map((c) => c.name)).toEqual(NAMES);
    for (const c of r.json.checks) expect(c.status, r.text).toBe(GOOD(c.name));
    expect(r.text).toMatch(/^ok {4}policy {8}1 rule compiled \(all in the config\)$/m);
    if (redis) expect(r.text).toMatch(/^ok {4}redis {9}redis:\/\/127\.0\.0\.1:\d+\/?: PING, SET EX\/GET\/DEL of a probe key answered \((Redis|Valkey) \d+\.\d+/m);
    expect(r.text).toMatch(/^ok {4}forward {7}OPTIONS http:\/\/127\.0\.0\.1:\d+\/ingest answered 204/m);
    expect(r.text).toMatch(new RegExp(`^ok {4}dynamodb {6}table ${table} ACTIVE, key ip \\(S\\), readable`, "m"));
    expect(r.text).toMatch(/^ok {4}ipapi .*answered 200: 8\.8\.8\.8 → [A-Z]{2}/m);
    expect(ipapi.counts.batchRequests - batches).toBe(1);
    expect(hop.methods.slice(hopCalls)).toEqual(["OPTIONS"]);
  });

  it("--offline sends nothing to ip-api and skips that check (still exit 0)", async () => {
    // Prepare
    const before = ipapi.counts.requests;
    // Act
    const r = await check({}, { offline: true });
    // Assess
    expect(r.code).toBe(0);
    expect(r.json.checks.find((c) => c.name === "ipapi")).toMatchObject({ status: "skip", detail: "--offline: no request sent" });
    expect(ipapi.counts.requests).toBe(before);
  });

  it("the ip-api request goes through the shared budget file: with the budget spent, nothing is sent and the check is skipped", async () => {
    // Prepare
    const setup = { ipapi: { requests_per_window: 1, window_s: 600 } };
    const dataDir = mkdtempSync(join(tmpdir(), "dnsgeo-check-budget-"));
    const first = await check(merge(setup, { data_dir: dataDir }));
    const before = ipapi.counts.batchRequests;
    // Act
    const second = await check(merge(setup, { data_dir: dataDir }));
    // Assess
    expect(first.code).toBe(0);
    expect(second.code).toBe(0);
    expect(second.json.checks.find((c) => c.name === "ipapi")?.status).toBe("skip");
    expect(second.json.checks.find((c) => c.name === "ipapi")?.detail).toMatch(/no request allowed by the budget now/);
    expect(ipapi.counts.batchRequests).toBe(before);
  });

  const broken: Array<[string, () => Promise<ConfigInput>, string, RegExp]> = [
    ["the next hop is down", async () => ({ forward: { url: `http://127.0.0.1:${await closedPort()}/ingest` } }), "forward", /^OPTIONS http:\/\/127\.0\.0\.1:\d+\/ingest: next hop unreachable \(.*ECONNREFUSED/],
    ["the table is missing", async () => ({ dynamodb: { table: "no-such-table" } }), "dynamodb", /^table no-such-table does not exist \(create it with `dnsgeo table create`\)$/],
    [
      "data_dir is a path that can't be created",
      async () => {
        const file = join(mkdtempSync(join(tmpdir(), "dnsgeo-check-")), "a-file");
        writeFileSync(file, "");
        return { data_dir: join(file, "data") };
      },
      "data_dir",
      /^\S+\/a-file\/data cannot take files: ENOTDIR/,
    ],
    ["ip-api is down", async () => ({ ipapi: { url: `http://127.0.0.1:${await closedPort()}` } }), "ipapi", /^POST http:\/\/127\.0\.0\.1:\d+\/batch: ip-api request failed \(ECONNREFUSED\)/],
    [
      "the forward dead-letter file's folder can't be created",
      async () => {
        const file = join(mkdtempSync(join(tmpdir(), "dnsgeo-check-")), "a-file");
        writeFileSync(file, "");
        return { forward: { url: hop.url, dead_letter: { path: join(file, "dl", "dead.ndjson") } } };
      },
      "data_dir",
      /^\S+\/a-file\/dl cannot take files: ENOTDIR/,
    ],
  ];

  for (const [what, setup, name, line] of broken) {
    it(`fails with one clear line and exit 1 when ${what}`, async () => {
      // Act
      const r = await check(await setup());
      // Assess
      expect(r.code).toBe(1);
      expect(r.json.checks.map((c) => c.name)).toEqual(NAMES);
      const failed = r.json.checks.filter((c) => c.status === "fail");
      expect(failed.map((c) => c.name), r.text).toEqual([name]);
      expect(failed[0]?.detail).toMatch(line);
      expect(r.text.split("\n").filter((l) => l.startsWith("FAIL"))).toHaveLength(1);
    });
  }

  it("fails ip-api when it answers 500, and the next hop when it redirects", async () => {
    // Prepare
    const redirect = createServer((_req, res) => {
      res.writeHead(301, { location: "https://elsewhere.example/ingest" });
      res.end();
    });
    await new Promise<void>((resolve) => redirect.listen(0, "127.0.0.1", resolve));
    await ipapi.setMode("500");
    try {
      // Act
      const r = await check({ forward: { url: `http://127.0.0.1:${(redirect.address() as AddressInfo).port}/` } });
      // Assess
      expect(r.code).toBe(1);
      const failed = Object.fromEntries(r.json.checks.filter((c) => c.status === "fail").map((c) => [c.name, c.detail]));
      expect(Object.keys(failed).sort()).toEqual(["forward", "ipapi"]);
      expect(failed.forward).toMatch(/answered 301 \(redirect to https:\/\/elsewhere\.example\/ingest\): forward\.url is wrong/);
      expect(failed.ipapi).toMatch(/\/batch answered 500$/);
    } finally {
      await ipapi.setMode("normal");
      await new Promise<void>((resolve) => redirect.close(() => resolve()));
    }
  });

  it.skipIf(IS_ROOT && !NOBODY_CAN_RUN)(
    "fails data_dir when it is read-only, as a non-root user (as root: the built CLI run as nobody, since root writes anywhere; skipped when nobody cannot read the checkout)",
    async () => {
      // Prepare
      const parent = mkdtempSync(join(tmpdir(), "dnsgeo-check-ro-"));
      chmodSync(parent, 0o755);
      const dir = join(parent, "data");
      mkdirSync(dir);
      chmodSync(dir, 0o555);
      // Act
      let code: number | null;
      let text: string;
      if (IS_ROOT) {
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DNSGEO_")) env[k] = v;
        const r = spawnSync(process.execPath, [MAIN, "check", "--offline"], { cwd: parent, uid: NOBODY, gid: NOBODY, env: Object.assign(env, { DNSGEO_DATA_DIR: dir, DNSGEO_LOG_LEVEL: "warn" }), encoding: "utf8" });
        code = r.status;
        text = r.stdout;
      } else {
        const r = await check({ data_dir: dir }, { offline: true });
        code = r.code;
        text = r.text;
      }
      // Assess
      expect(code, text).toBe(1);
      const failed = parseLines(text).filter((c) => c.status === "fail");
      expect(failed.map((c) => c.name)).toEqual(["data_dir"]);
      expect(failed[0]?.detail).toMatch(/\/data cannot take files: EACCES/);
    },
  );

  it("fails redis with one clear line when nothing listens at cache.redis.url, within the connect timeout", async () => {
    // Prepare
    const port = await closedPort();
    // Act
    const t0 = performance.now();
    const r = await check({ cache: { redis: { url: `redis://:secret@127.0.0.1:${port}/0`, connect_timeout_ms: 500 } } });
    const ms = performance.now() - t0;
    // Assess
    expect(r.code).toBe(1);
    const line = r.text.split("\n").find((l) => /^FAIL {2}redis /.test(l)) ?? "";
    expect(line).toMatch(new RegExp(`^FAIL {2}redis {9}redis://:redacted@127\\.0\\.0\\.1:${port}/0: cannot connect within cache\\.redis\\.connect_timeout_ms \\(500 ms\\): .*ECONNREFUSED`));
    expect(r.text).not.toContain("secret");
    expect(ms).toBeLessThan(5000);
  });

  it.skipIf(!redisBin)("fails redis when the server wants a password the URL does not give", async () => {
    // Prepare
    const locked = await startRedisServer(redisBin as string, ["--requirepass", "s3cret"]);
    try {
      // Act
      const bad = await check({ cache: { redis: { url: locked.url } } });
      const good = await check({ cache: { redis: { url: locked.url.replace("redis://", "redis://:s3cret@") } } });
      // Assess
      expect(bad.code).toBe(1);
      expect(bad.json.checks.find((c) => c.name === "redis")).toMatchObject({ status: "fail" });
      expect(bad.text).toMatch(/^FAIL {2}redis .*NOAUTH/m);
      expect(good.json.checks.find((c) => c.name === "redis")?.status).toBe("pass");
    } finally {
      await locked.close();
    }
  });

  it("checks the policy rules: a rules file that compiles passes with its count; a bad one fails naming the problem", async () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-check-policy-"));
    const good = join(dir, "good.yaml");
    const bad = join(dir, "bad.yaml");
    writeFileSync(good, "- name: scanners\n  tag: scanner\n  asns: [398324, 14061]\n- name: ru\n  tag: outbound-ru\n  countries: [RU]\n");
    writeFileSync(bad, "- name: wrong\n  tag: x\n  cidrs: [10.0.0.0/40]\n");
    // Act
    const ok = await check({ policy: { rules_file: good } });
    const fail = await check({ policy: { rules_file: bad } });
    // Assess
    expect(ok.json.checks.find((c) => c.name === "policy")?.detail).toBe(`3 rules compiled (1 in the config, 2 in ${good})`);
    expect(fail.code).toBe(1);
    expect(fail.text).toMatch(/^FAIL {2}policy {8}rule wrong: "10\.0\.0\.0\/40" is not a CIDR/m);
  });

  it("the built CLI: --json against a good setup exits 0 with every check passed; a wrong config value exits 78 with one failed check", async () => {
    // Prepare
    const env = {
      DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-check-cli-")),
      DNSGEO_FORWARD_URL: hop.url,
      DNSGEO_DYNAMODB_TABLE: table,
      DNSGEO_DYNAMODB_ENDPOINT: dyn.endpoint,
      DNSGEO_DYNAMODB_REGION: "us-east-1",
      DNSGEO_IPAPI_URL: ipapi.url,
      DNSGEO_POLICY_RULES: JSON.stringify(POLICY_RULES),
      ...(redis ? { DNSGEO_CACHE_REDIS_URL: redis.url } : {}),
      // The child's own AWS chain reads these; dynalite accepts any key.
      AWS_ACCESS_KEY_ID: FAKE_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: FAKE_CREDENTIALS.secretAccessKey,
    };
    // Act
    const good = await runCli(["check", "--json"], { env });
    const bad = await runCli(["check", "--json"], { env: { ...env, DNSGEO_FORWARD_TIMEOUT_MS: "soon" } });
    // Assess
    expect(good.code, good.stderr).toBe(0);
    const j = JSON.parse(good.stdout.toString()) as { ok: boolean; checks: CheckResult[] };
    expect(j.ok).toBe(true);
    expect(j.checks.map((c) => [c.name, c.status])).toEqual(NAMES.map((n) => [n, GOOD(n)]));
    expect(bad.code).toBe(78);
    const b = JSON.parse(bad.stdout.toString()) as { ok: boolean; checks: CheckResult[] };
    expect(b).toMatchObject({ ok: false, checks: [{ name: "config", status: "fail" }] });
    expect(b.checks[0]?.detail).toMatch(/DNSGEO_FORWARD_TIMEOUT_MS: expected a number/);
  }, 60_000);
});
