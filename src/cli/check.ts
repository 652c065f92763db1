/**
 * `dnsgeo check`: validates the config, then tries each thing it points at,
 * the way `serve` would use it, before a roll-out. One line per check; exit 0
 * only when none failed (a check that does not apply is skipped, not failed).
 */
import { accessSync, constants, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { GetCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { request } from "undici";
import { limiterStatePath } from "../app.js";
import { ConfigError, deadLetterPath, headerObject, sqlitePath, type Config } from "../config.js";
import { createDynamoClient, describeTable } from "../lookup/dynamodb-tier.js";
import { DynamoFleetBudget } from "../lookup/fleet-budget.js";
import { fileLimiterStore } from "../lookup/limiter-store.js";
import { IpApiProvider, ProviderError, ipApiOptionsFromConfig } from "../lookup/ipapi-provider.js";
import { MmdbProvider } from "../lookup/mmdb-provider.js";
import { RateLimiter } from "../lookup/rate-limiter.js";
import { createRedisClient, redactRedisUrl } from "../lookup/redis-tier.js";
import { compileFromConfig } from "../policy/engine.js";
import type { Logger } from "../observability/logger.js";
import { CliFailure, EXIT_CONFIG, type CliContext } from "./context.js";

/** pass: works; fail: will not work as configured; skip: not configured, or not tried (`--offline`). */
export type CheckStatus = "pass" | "fail" | "skip";

export interface CheckResult {
  /** config | data_dir | offline_data | policy | forward | dynamodb | redis | ipapi */
  name: string;
  status: CheckStatus;
  /** One line: what was tried and what came back. */
  detail: string;
  /** How long the check took, milliseconds. */
  ms: number;
}

export interface CheckOptions {
  /** Do not send the ip-api request. */
  offline?: boolean;
  /** A DynamoDB client to use instead of one built from `dynamodb.*` (tests, embedding). */
  dynamoClient?: DynamoDBDocumentClient;
  logger?: Logger;
}

/** A public address every geo source knows; the ip-api check asks for it alone. */
const PROBE_IP = "8.8.8.8";

function oneLine(e: unknown): string {
  const err = e as { name?: string; code?: string; message?: string };
  const msg = err?.message ?? String(e);
  // dnsgeo's own codes (DNSGEO_PROVIDER_CONNECT) say less than the message that follows them.
  const code = err?.code?.startsWith("DNSGEO_") ? undefined : err?.code;
  const tag = code ?? (err?.name && err.name !== "Error" && err.name !== "ProviderError" ? err.name : undefined);
  return (tag && !msg.includes(tag) ? `${tag}: ${msg}` : msg).replace(/\s*\n\s*/g, " ");
}

/**
 * The folder must take a file, as the SQLite cache, the ip-api budget file and
 * the dead-letter file need: it is created when missing (as `serve` would) and
 * a probe file is written and removed. A write is the only honest test: root
 * passes every permission check, a read-only mount fails only on write.
 */
function writableDir(dir: string): string {
  let existed = true;
  try {
    if (!statSync(dir).isDirectory()) throw new Error(`${dir} exists and is not a directory`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    existed = false;
    mkdirSync(dir, { recursive: true });
  }
  const probe = join(dir, `.dnsgeo-check-${process.pid}`);
  writeFileSync(probe, "");
  rmSync(probe, { force: true });
  accessSync(dir, constants.W_OK);
  return existed ? "writable" : "created, writable";
}

async function checkDataDir(cfg: Readonly<Config>): Promise<[CheckStatus, string]> {
  const dirs = [cfg.data_dir];
  const also = (dir: string): void => {
    if (!dirs.some((d) => resolve(d) === resolve(dir))) dirs.push(dir);
  };
  if (cfg.cache.sqlite.enabled) also(dirname(sqlitePath(cfg)));
  // Forward mode writes the records the next hop refuses there.
  if (cfg.forward.url) also(dirname(deadLetterPath(cfg)));
  const notes: string[] = [];
  for (const d of dirs) {
    try {
      notes.push(`${d} ${writableDir(d)}`);
    } catch (e) {
      return ["fail", `${d} cannot take files: ${oneLine(e)}`];
    }
  }
  return ["pass", notes.join("; ")];
}

async function checkOfflineData(cfg: Readonly<Config>): Promise<[CheckStatus, string]> {
  if (!cfg.mmdb.enabled) return ["skip", "mmdb.enabled is false"];
  const m = cfg.mmdb;
  const p = await MmdbProvider.open(
    Object.assign(
      { ttlS: cfg.cache.ttl_s },
      m.city_v4_path ? { cityV4Path: m.city_v4_path } : {},
      m.city_v6_path ? { cityV6Path: m.city_v6_path } : {},
      m.asn_v4_path ? { asnV4Path: m.asn_v4_path } : {},
      m.asn_v6_path ? { asnV6Path: m.asn_v6_path } : {},
    ),
  );
  try {
    const g = p.get([PROBE_IP]).get(PROBE_IP)?.geo;
    if (!g || (g.countryCode === undefined && g.asn === undefined)) return ["fail", `loaded, but ${PROBE_IP} is in neither the city nor the ASN data`];
    return ["pass", `city and ASN data loaded; ${PROBE_IP} → ${g.countryCode ?? "?"}, AS${g.asn ?? "?"}`];
  } finally {
    p.close();
  }
}

/**
 * OPTIONS, because it carries no body and asks the server about the resource
 * without acting on it: a next hop that ingests whatever is POSTed (Fluent
 * Bit's `http` input, Vector's `http_server`) would turn a probe POST into a
 * log record. Any HTTP answer proves the listener is there and speaks HTTP
 * (Fluent Bit answers 400 to anything but a POST); what fails is no answer,
 * a redirect (forward.url is wrong: forwarding does not follow them), a demand
 * for credentials forward.headers do not give, or a gateway/overload status.
 */
async function checkForward(cfg: Readonly<Config>): Promise<[CheckStatus, string]> {
  const url = cfg.forward.url;
  if (!url) return ["skip", "forward.url is not set"];
  const safe = new URL(url);
  safe.username = "";
  safe.password = "";
  safe.search = "";
  let res;
  try {
    res = await request(url, { method: "OPTIONS", headers: headerObject(cfg.forward.headers), signal: AbortSignal.timeout(cfg.forward.timeout_ms) });
  } catch (e) {
    const err = e as Error;
    if (err.name === "TimeoutError" || err.name === "AbortError") return ["fail", `OPTIONS ${safe.href}: no answer within forward.timeout_ms (${cfg.forward.timeout_ms} ms)`];
    return ["fail", `OPTIONS ${safe.href}: next hop unreachable (${oneLine(e)})`];
  }
  await res.body.dump();
  const s = res.statusCode;
  if (s >= 300 && s < 400) return ["fail", `OPTIONS ${safe.href} answered ${s} (redirect to ${String(res.headers.location ?? "?")}): forward.url is wrong; forwarding does not follow redirects`];
  if (s === 401 || s === 407) return ["fail", `OPTIONS ${safe.href} answered ${s}: the next hop wants credentials that forward.headers do not give`];
  if (s === 502 || s === 503 || s === 504) return ["fail", `OPTIONS ${safe.href} answered ${s}: the next hop is up but cannot take data now`];
  return ["pass", `OPTIONS ${safe.href} answered ${s} (any answer shows the next hop listens)`];
}

/**
 * Connects as the tier does (URL, TLS, AUTH, timeouts), then PING, a SET of a probe
 * key with a 10 s EX, GET of it (the tier reads and writes) and DEL; INFO gives the
 * server's name and version for the line.
 */
async function checkRedis(cfg: Readonly<Config>): Promise<[CheckStatus, string]> {
  const r = cfg.cache.redis;
  if (!r.url) return ["skip", "cache.redis.url is not set"];
  const where = redactRedisUrl(r.url);
  const client = createRedisClient({ url: r.url, connectTimeoutMs: r.connect_timeout_ms, commandTimeoutMs: r.command_timeout_ms, caFile: r.ca_file });
  // ioredis reports connection errors as events too; the check reads them from the calls.
  let lastError: Error | undefined;
  client.on("error", (e: Error) => (lastError = e));
  try {
    try {
      await client.connect();
    } catch (e) {
      return ["fail", `${where}: cannot connect within cache.redis.connect_timeout_ms (${r.connect_timeout_ms} ms): ${oneLine(lastError ?? e)}`];
    }
    const pong = await client.ping();
    if (pong !== "PONG") return ["fail", `${where}: PING answered ${pong}`];
    const key = `${r.key_prefix}#check#${process.pid}`;
    const value = String(Date.now());
    await client.set(key, value, "EX", 10);
    const back = await client.get(key);
    await client.del(key);
    if (back !== value) return ["fail", `${where}: SET ${key} then GET gave ${back === null ? "nothing" : "another value"} (a replica, or a proxy that drops writes?)`];
    const info = await client.info("server");
    const version = /^(?:valkey|redis)_version:(\S+)/m.exec(info)?.[1] ?? "?";
    const server = /^server_name:valkey/m.test(info) || /^valkey_version:/m.test(info) ? "Valkey" : "Redis";
    return ["pass", `${where}: PING, SET EX/GET/DEL of a probe key answered (${server} ${version})`];
  } catch (e) {
    return ["fail", `${where}: ${oneLine(e)}`];
  } finally {
    client.disconnect();
  }
}

/** The policy rules (config and `policy.rules_file`) load and compile, as `serve` would at start. */
async function checkPolicy(cfg: Readonly<Config>): Promise<[CheckStatus, string]> {
  if (cfg.policy.rules.length === 0 && cfg.policy.rules_file === undefined) return ["skip", "no policy.rules and no policy.rules_file"];
  let p;
  try {
    p = compileFromConfig(cfg);
  } catch (e) {
    return ["fail", (e as Error).message];
  }
  const from = cfg.policy.rules_file ? `${cfg.policy.rules.length} in the config, ${p.size - cfg.policy.rules.length} in ${cfg.policy.rules_file}` : "all in the config";
  const alert = cfg.policy.alert.url ? `; alerts to ${new URL(cfg.policy.alert.url).origin}` : "";
  return ["pass", `${p.size} rule${p.size === 1 ? "" : "s"} compiled (${from})${alert}`];
}

function dynamoClientFor(cfg: Readonly<Config>, opts: CheckOptions): { client: DynamoDBDocumentClient; owned: boolean } {
  if (opts.dynamoClient) return { client: opts.dynamoClient, owned: false };
  const d = cfg.dynamodb;
  return {
    client: createDynamoClient(
      Object.assign(
        { connectTimeoutMs: d.connect_timeout_ms, requestTimeoutMs: d.request_timeout_ms, maxAttempts: 2 },
        d.endpoint ? { endpoint: d.endpoint } : {},
        d.region ? { region: d.region } : {},
      ),
    ),
    owned: true,
  };
}

/** DescribeTable (exists, ACTIVE, key `ip` string) and one GetItem of a key no IP can have (read permission). */
async function checkDynamo(cfg: Readonly<Config>, client: DynamoDBDocumentClient): Promise<[CheckStatus, string]> {
  const table = cfg.dynamodb.table as string;
  let d;
  try {
    d = await describeTable(client, table);
  } catch (e) {
    if ((e as Error).name === "ResourceNotFoundException") return ["fail", `table ${table} does not exist (create it with \`dnsgeo table create\`)`];
    return ["fail", `cannot describe table ${table}: ${oneLine(e)}`];
  }
  if (!d.keyOk) {
    const key = d.keySchema.map((k) => `${k.name ?? "?"} ${k.type ?? "?"}`).join(", ");
    return ["fail", `table ${table} has key [${key}]; dnsgeo needs just "ip" (string, HASH)`];
  }
  if (d.status !== "ACTIVE") return ["fail", `table ${table} is ${d.status ?? "in an unknown state"}, not ACTIVE`];
  try {
    await client.send(new GetCommand({ TableName: table, Key: { ip: "#check#" } }), { abortSignal: AbortSignal.timeout(cfg.dynamodb.request_timeout_ms) });
  } catch (e) {
    return ["fail", `table ${table} is described but cannot be read: ${oneLine(e)}`];
  }
  const ttl = d.ttl === "unsupported" ? "TTL unsupported by this endpoint" : `TTL ${d.ttl.status ?? "?"}${d.ttl.attribute ? ` on ${d.ttl.attribute}` : ""}`;
  return ["pass", `table ${table} ACTIVE, key ip (S), readable; ${ttl}`];
}

/**
 * One real batch request for one IP. It goes through the same limiter and
 * budget file as `serve` (and the fleet budget when configured), so a check
 * run on a busy host cannot push it past ip-api's limit; when no request is
 * allowed right now the check is skipped, saying why, and a ban fails it.
 */
async function checkIpApi(cfg: Readonly<Config>, opts: CheckOptions, client: DynamoDBDocumentClient | undefined): Promise<[CheckStatus, string]> {
  if (!cfg.ipapi.enabled) return ["skip", "ipapi.enabled is false"];
  if (opts.offline) return ["skip", "--offline: no request sent"];
  const shared =
    client && cfg.dynamodb.fleet_budget && cfg.dynamodb.table
      ? new DynamoFleetBudget({
          client,
          table: cfg.dynamodb.table,
          requestsPerWindow: cfg.ipapi.requests_per_window,
          windowS: cfg.ipapi.window_s,
          callTimeoutMs: cfg.dynamodb.request_timeout_ms,
        })
      : undefined;
  const limiter = new RateLimiter(
    Object.assign(
      { requestsPerWindow: cfg.ipapi.requests_per_window, windowS: cfg.ipapi.window_s, store: fileLimiterStore(limiterStatePath(cfg), opts.logger) },
      shared ? { shared } : {},
      opts.logger ? { logger: opts.logger } : {},
    ),
  );
  const provider = new IpApiProvider({ ...ipApiOptionsFromConfig(cfg), logger: opts.logger });
  const where = provider.baseUrl;
  try {
    if (limiter.banned) return ["fail", `${where}: this egress IP is banned (ip-api answered 403); no request sent`];
    const sentAt = await limiter.acquire();
    if (sentAt === undefined) return ["skip", `${where}: no request allowed by the budget now (next in ${Math.ceil(limiter.waitMs() / 1000)} s); not tried`];
    let r;
    try {
      r = await provider.fetchBatch([PROBE_IP]);
    } catch (e) {
      const pe = e as ProviderError;
      limiter.update({ status: pe.status ?? 0, error: pe.kind ?? "network", sentAt, ...(pe.rl !== undefined ? { rl: pe.rl } : {}), ...(pe.ttl !== undefined ? { ttl: pe.ttl } : {}) });
      return ["fail", `POST ${where}/batch: ${oneLine(e)}`];
    }
    limiter.update(Object.assign({ status: r.status, sentAt }, r.rl !== undefined ? { rl: r.rl } : {}, r.ttl !== undefined ? { ttl: r.ttl } : {}));
    if (r.status === 403) return ["fail", `POST ${where}/batch answered 403: this egress IP is banned (or the key is wrong)`];
    if (r.status !== 200) return ["fail", `POST ${where}/batch answered ${r.status}`];
    const e = r.entries[0];
    if (!e?.geo) return ["fail", `POST ${where}/batch answered 200 but had no data for ${PROBE_IP}`];
    const left = r.rl !== undefined ? `; ${r.rl} requests left in ip-api's window` : "";
    return ["pass", `POST ${where}/batch answered 200: ${PROBE_IP} → ${e.geo.countryCode ?? "?"}, ${e.geo.isp ?? e.geo.asOrg ?? "?"}${left}`];
  } finally {
    await provider.close();
  }
}

async function timed(name: string, fn: () => Promise<[CheckStatus, string]>): Promise<CheckResult> {
  const t0 = performance.now();
  let status: CheckStatus;
  let detail: string;
  try {
    [status, detail] = await fn();
  } catch (e) {
    status = "fail";
    detail = oneLine(e);
  }
  return { name, status, detail: detail.replace(/\s*\n\s*/g, " "), ms: Math.round(performance.now() - t0) };
}

/** Runs every check after the config's, in order; never throws. */
export async function runChecks(cfg: Readonly<Config>, opts: CheckOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  results.push(await timed("data_dir", () => checkDataDir(cfg)));
  results.push(await timed("offline_data", () => checkOfflineData(cfg)));
  results.push(await timed("policy", () => checkPolicy(cfg)));
  results.push(await timed("forward", () => checkForward(cfg)));
  const dyn = cfg.dynamodb.table ? dynamoClientFor(cfg, opts) : undefined;
  try {
    results.push(await timed("dynamodb", async () => (dyn ? checkDynamo(cfg, dyn.client) : ["skip", "dynamodb.table is not set"])));
    results.push(await timed("redis", () => checkRedis(cfg)));
    results.push(await timed("ipapi", () => checkIpApi(cfg, opts, dyn?.client)));
  } finally {
    if (dyn?.owned) dyn.client.destroy();
  }
  return results;
}

const LABEL: Record<CheckStatus, string> = { pass: "ok  ", fail: "FAIL", skip: "skip" };

/** One line per check: `ok   name  detail`. */
export function formatChecks(results: readonly CheckResult[]): string {
  const w = Math.max(...results.map((r) => r.name.length));
  return results.map((r) => `${LABEL[r.status]}  ${r.name.padEnd(w)}  ${r.detail}\n`).join("");
}

/**
 * Loads the config, runs the checks and prints them. Returns the exit code:
 * 0 when none failed, 1 when one did, 78 when the config itself is wrong.
 */
export async function checkCommand(loadConfig: () => Readonly<Config>, out: NodeJS.WritableStream, opts: CheckOptions & { json?: boolean } = {}): Promise<number> {
  let cfg: Readonly<Config>;
  const t0 = performance.now();
  let results: CheckResult[];
  let code: number;
  try {
    cfg = loadConfig();
    results = [{ name: "config", status: "pass", detail: "valid", ms: Math.round(performance.now() - t0) }];
    results.push(...(await runChecks(cfg, opts)));
    code = results.some((r) => r.status === "fail") ? 1 : 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    results = [{ name: "config", status: "fail", detail: oneLine(e.message), ms: Math.round(performance.now() - t0) }];
    code = EXIT_CONFIG;
  }
  out.write(opts.json ? JSON.stringify({ ok: code === 0, checks: results }) + "\n" : formatChecks(results));
  return code;
}

/** Adds `dnsgeo check`. */
export function registerCheck(program: Command, ctx: CliContext): void {
  program
    .command("check")
    .description("validate the config, then try what it points at (data_dir, offline data, forward.url, the policy rules, the DynamoDB table, Redis, ip-api); exit 0 only when nothing failed")
    .option("--offline", "send no request to ip-api")
    .option("--json", "one JSON object: {ok, checks: [{name, status, detail, ms}]}")
    .action(async (o: { offline?: boolean; json?: boolean }) => {
      const code = await checkCommand(ctx.loadConfig, ctx.stdout, { offline: o.offline === true, json: o.json === true, logger: ctx.logger });
      if (code === EXIT_CONFIG) throw new CliFailure("check: the config is not valid", code);
      if (code !== 0) throw new CliFailure("check: a check failed", code);
    });
}
