/** What every CLI verb gets from main.ts: config loading and the standard streams. */
import { InvalidArgumentError } from "commander";
import type { Config } from "../config.js";
import type { Logger } from "../observability/logger.js";

export interface CliContext {
  /** Loads and validates the config (file from --config or DNSGEO_CONFIG, then env); throws ConfigError. */
  loadConfig(): Readonly<Config>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream;
  logger: Logger;
  /** Where long-running verbs (serve) hear SIGTERM/SIGINT (and SIGHUP: reload the policy rules); main.ts passes `process`. */
  signals?: {
    on(signal: "SIGTERM" | "SIGINT" | "SIGHUP", listener: () => void): unknown;
    off(signal: "SIGTERM" | "SIGINT" | "SIGHUP", listener: () => void): unknown;
  };
  /** Ends the process with a code (main.ts passes `process.exit`). */
  exit?: (code: number) => void;
}

/** A failure a verb reports: one line on stderr and the exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = "CliFailure";
  }
}

/** Exit code for usage errors (wrong flag, missing argument). */
export const EXIT_USAGE = 2;
/** Exit code for a wrong config value (as Vector does: EX_CONFIG). */
export const EXIT_CONFIG = 78;

/** commander argument parser for a positive integer option (usage error otherwise). */
export function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}
