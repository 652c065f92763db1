/**
 * Keeps the ip-api limiter's recent sends, pause and ban on disk, so a process
 * that restarts (a deploy, a crash loop, a script running `dnsgeo lookup` in a
 * loop) does not start with a fresh budget while ip-api still counts what the
 * previous one sent. Processes on one host that share the data directory also
 * see each other's sends. A fleet behind one NAT needs the DynamoDB fleet budget.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../observability/logger.js";

/** What is kept: epoch-millisecond times. */
export interface LimiterState {
  /** Times of sends that may still count in the provider's window. */
  sends: number[];
  pausedUntil: number;
  bannedUntil: number;
  /** Set after a 403 until a send succeeds: one send at a time, even past the cool-down and across restarts. */
  probing?: boolean;
}

/** Where a RateLimiter keeps its state. Never throws. */
export interface LimiterStore {
  load(): LimiterState | undefined;
  save(state: LimiterState): void;
}

function numbers(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === "number" && Number.isFinite(x)) : [];
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

/** A JSON file written atomically (temp file + rename); unreadable or missing means no state. */
export function fileLimiterStore(path: string, logger?: Logger): LimiterStore {
  let warned = false;
  const warn = (e: unknown, what: string): void => {
    if (warned) return;
    warned = true;
    logger?.warn({ path, err: e instanceof Error ? e.message : String(e) }, `ip-api budget file cannot be ${what}; the budget is kept in memory only`);
  };
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(path, "utf8");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") warn(e, "read");
        return undefined;
      }
      try {
        const o = JSON.parse(text) as Record<string, unknown>;
        const st: LimiterState = { sends: numbers(o.sends), pausedUntil: num(o.pausedUntil), bannedUntil: num(o.bannedUntil) };
        if (o.probing === true) st.probing = true;
        return st;
      } catch {
        return undefined;
      }
    },
    save(state) {
      try {
        mkdirSync(dirname(path), { recursive: true });
        const tmp = `${path}.${process.pid}.tmp`;
        writeFileSync(tmp, JSON.stringify(state));
        renameSync(tmp, path);
      } catch (e) {
        warn(e, "written");
      }
    },
  };
}
