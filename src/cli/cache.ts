/** `dnsgeo cache stats|purge [--expired]`: the local SQLite cache file. JSON on stdout. */
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { sqlitePath, type Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import { silentLogger } from "../observability/logger.js";
import { SqliteTier } from "../lookup/sqlite-tier.js";
import { CliFailure, type CliContext } from "./context.js";

function openTier(cfg: Readonly<Config>, logger: Logger): SqliteTier {
  const s = cfg.cache.sqlite;
  const tier = SqliteTier.open({
    path: sqlitePath(cfg),
    maxRows: s.max_rows,
    writeBatch: s.write_batch,
    flushIntervalMs: s.flush_interval_ms,
    queueMax: s.queue_max,
    staleMaxS: cfg.cache.stale_max_s,
    logger,
  });
  if (tier.isDegraded) {
    tier.close();
    throw new CliFailure(`cannot use the cache file ${sqlitePath(cfg)} (see the warning above)`, 1);
  }
  return tier;
}

/** Prints rows, expired rows, file bytes and schema version; a missing file is reported, not created. Returns the exit code. */
export function cacheStats(cfg: Readonly<Config>, out: NodeJS.WritableStream, logger: Logger = silentLogger()): number {
  const path = sqlitePath(cfg);
  if (!existsSync(path)) {
    out.write(JSON.stringify({ path, exists: false, rows: 0 }) + "\n");
    return 0;
  }
  const tier = openTier(cfg, logger);
  try {
    const st = tier.stats();
    out.write(
      JSON.stringify({ path: st.path, exists: true, schemaVersion: st.schemaVersion, rows: st.rows, expiredRows: st.expiredRows, fileBytes: st.fileBytes }) + "\n",
    );
  } finally {
    tier.close();
  }
  return 0;
}

/** Deletes every row, or only expired ones; prints how many. Returns the exit code. */
export function cachePurge(
  cfg: Readonly<Config>,
  out: NodeJS.WritableStream,
  opts: { expiredOnly?: boolean } = {},
  logger: Logger = silentLogger(),
): number {
  const path = sqlitePath(cfg);
  if (!existsSync(path)) {
    out.write(JSON.stringify({ path, exists: false, deleted: 0, expiredOnly: opts.expiredOnly === true }) + "\n");
    return 0;
  }
  const tier = openTier(cfg, logger);
  try {
    const deleted = tier.purge({ expiredOnly: opts.expiredOnly });
    out.write(JSON.stringify({ path, deleted, expiredOnly: opts.expiredOnly === true, rows: tier.stats().rows }) + "\n");
  } finally {
    tier.close();
  }
  return 0;
}

/** Registers `cache stats|purge`. */
export function registerCache(program: Command, ctx: CliContext): void {
  const cache = program.command("cache").description("inspect or empty the local SQLite cache (cache.sqlite.path, default ${data_dir}/dnsgeo.sqlite)");
  cache
    .command("stats")
    .description("print rows, expired rows, file size and schema version as JSON")
    .action(() => {
      cacheStats(ctx.loadConfig(), ctx.stdout, ctx.logger);
    });
  cache
    .command("purge")
    .description("delete every cached row (or only expired ones with --expired)")
    .option("--expired", "delete only rows past their TTL")
    .action((flags: { expired?: boolean }) => {
      cachePurge(ctx.loadConfig(), ctx.stdout, { expiredOnly: flags.expired === true }, ctx.logger);
    });
}
