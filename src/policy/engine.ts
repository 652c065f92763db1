/**
 * Policy rules at run time: loads `policy.rules` and `policy.rules_file`, compiles
 * them, answers the pipeline's `PolicyPort` (counting matches and offering webhook
 * alerts), and reloads on `reload()` (SIGHUP) or when the rules file changes
 * (fs.watch on its folder, so an editor's rename-over counts; 200 ms debounce).
 * A reload that fails keeps the rules in use and logs one error line.
 */
import { readFileSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { ConfigError, policyRuleSchema, type Config, type PolicyRule } from "../config.js";
import type { IpResult } from "../lookup/lookup.js";
import type { Clock } from "../lookup/lookup.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { PolicyAnswer, PolicyPort, PolicyRecord, RecordPolicy } from "./types.js";
import { AlertSender } from "./alerts.js";
import { CompiledPolicy } from "./compile.js";

const fileSchema = z.union([z.array(policyRuleSchema), z.object({ rules: z.array(policyRuleSchema) }).strict()]);

/** Debounce of rules-file changes, milliseconds (editors write a file in several steps). */
export const RELOAD_DEBOUNCE_MS = 200;

/** The rules of a rules file (YAML or JSON: a list, or `{rules: [...]}`); throws with a one-line message. */
export function readRulesFile(path: string): PolicyRule[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`cannot read policy.rules_file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`policy.rules_file ${path} is not valid YAML or JSON: ${(e as Error).message.split("\n")[0] ?? ""}`);
  }
  if (doc === null || doc === undefined) return [];
  const r = Array.isArray(doc) ? z.array(policyRuleSchema).safeParse(doc) : fileSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i ? i.path.join(".") : "";
    throw new Error(`policy.rules_file ${path}: ${where ? `${where}: ` : ""}${i?.message ?? "not a list of rules"}`);
  }
  return Array.isArray(r.data) ? r.data : r.data.rules;
}

/** Compiles the config's rules and those of its rules file; throws with a one-line message. */
export function compileFromConfig(cfg: Readonly<Config>): CompiledPolicy {
  const rules: PolicyRule[] = [...cfg.policy.rules];
  if (cfg.policy.rules_file) rules.push(...readRulesFile(cfg.policy.rules_file));
  return new CompiledPolicy(rules);
}

/** A record's source address: the field each known kind keeps it in, or "". */
export function sourceAddress(r: Record<string, unknown>): string {
  const s = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const o = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  return s(r.srcaddr) ?? s(o(r.source)?.ip) ?? s(o(r.client)?.ip) ?? s(r["id.orig_h"]) ?? s(o(r.id)?.orig_h) ?? s(o(r.src_endpoint)?.ip) ?? "";
}

export interface PolicyEngineOptions {
  config: Readonly<Config>;
  logger?: Logger;
  metrics?: Metrics;
  clock?: Clock;
}

export class PolicyEngine implements PolicyPort {
  private current: CompiledPolicy;
  private readonly alerts: AlertSender | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;

  /** Compiles the rules; a bad rule or rules file at start is a config error (exit 78). */
  constructor(private readonly opts: PolicyEngineOptions) {
    try {
      this.current = compileFromConfig(opts.config);
    } catch (e) {
      throw new ConfigError(`config key policy: ${(e as Error).message}`);
    }
    opts.metrics?.policyRules.set(this.current.size);
    const a = opts.config.policy.alert;
    this.alerts = a.url ? new AlertSender({ url: a.url, alert: a, logger: opts.logger, metrics: opts.metrics, clock: opts.clock }) : undefined;
    const file = opts.config.policy.rules_file;
    if (file && opts.config.policy.watch) this.watchFile(file);
  }

  /** Rules in use. */
  get size(): number {
    return this.current.size;
  }

  /** The webhook sender, when `policy.alert.url` is set. */
  get alertSender(): AlertSender | undefined {
    return this.alerts;
  }

  private watchFile(file: string): void {
    const name = basename(file);
    try {
      this.watcher = watch(dirname(file), { persistent: false }, (_event, f) => {
        if (f !== null && f !== name) return;
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.reload("file_changed"), RELOAD_DEBOUNCE_MS);
        this.debounce.unref();
      });
      this.watcher.on("error", (e) => this.opts.logger?.warn({ err: e, file }, "policy rules file watch failed; SIGHUP still reloads"));
    } catch (e) {
      this.opts.logger?.warn({ err: e, file }, "cannot watch the policy rules file; SIGHUP still reloads");
    }
  }

  /** Loads and compiles the rules again; on any error the rules in use stay. Returns whether the new rules are in use. */
  reload(reason: "sighup" | "file_changed" | "api" = "api"): boolean {
    let next: CompiledPolicy;
    try {
      next = compileFromConfig(this.opts.config);
    } catch (e) {
      this.opts.metrics?.policyReloads.inc({ result: "error" });
      this.opts.logger?.error({ reason, rules: this.current.size }, `policy reload failed, rules in use kept: ${(e as Error).message}`);
      return false;
    }
    this.current = next;
    this.opts.metrics?.policyReloads.inc({ result: "ok" });
    this.opts.metrics?.policyRules.set(next.size);
    this.opts.logger?.info({ reason, rules: next.size }, "policy rules reloaded");
    return true;
  }

  match(rec: PolicyRecord, answers: readonly PolicyAnswer[], results: ReadonlyMap<string, IpResult>): RecordPolicy | undefined {
    const p = this.current.match(rec, answers, results);
    if (p === undefined) return undefined;
    const names = CompiledPolicy.ruleNames(p);
    for (const n of names) this.opts.metrics?.policyMatches.inc({ rule: n });
    if (this.alerts) {
      const source = sourceAddress(rec.record);
      const at = new Date(this.opts.clock?.now() ?? Date.now()).toISOString();
      for (const n of names) {
        const h = p.hits.find((x) => x.rule === n);
        if (!h) continue;
        this.alerts.offer(Object.assign({ rule: n, tag: h.tag, source, at }, rec.queryName !== undefined ? { query_name: rec.queryName } : {}, h.ip !== undefined ? { answer_ip: h.ip } : {}));
      }
    }
    return p;
  }

  close(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.alerts?.close();
  }
}
