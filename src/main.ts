#!/usr/bin/env node
/**
 * The only file that touches `process`: argv, env, streams, signals, exit.
 */
import { loadConfig, type Config } from "./config.js";
import { runCli } from "./cli/program.js";
import { createLogger } from "./observability/logger.js";

let configFile: string | undefined = process.env.DNSGEO_CONFIG || undefined;
let cached: Readonly<Config> | undefined;
const env = process.env as Record<string, string | undefined>;

const logLevel = env.DNSGEO_LOG_LEVEL ?? "info";
// The level from the environment holds until the config (file + env) is loaded, then `log.level` wins.
const logger = createLogger(["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(logLevel) ? logLevel : "info");

function config(): Readonly<Config> {
  if (!cached) {
    cached = loadConfig({ ...(configFile ? { file: configFile } : {}), env });
    logger.level = cached.log.level;
  }
  return cached;
}

// `dnsgeo enrich … | head` closes stdout early: stop quietly, as Unix filters do.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  logger.error({ err }, "stdout error");
  process.exit(1);
});

process.on("unhandledRejection", (err) => {
  // Count and log, never die: a background lookup must not take the sidecar down.
  logger.error({ err }, "unhandled rejection");
});

const code = await runCli(
  process.argv.slice(2),
  {
    loadConfig: config,
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    logger,
    signals: process,
    exit: (c) => {
      logger.flush();
      process.exit(c);
    },
  },
  (file) => {
    if (file) configFile = file;
  },
);
process.exitCode = code;
