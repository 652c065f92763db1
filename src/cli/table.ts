/**
 * `dnsgeo table create|describe [NAME]`: the shared DynamoDB table (partition
 * key `ip`, TTL on `expires_at`). JSON on stdout; a one-line message and a
 * non-zero exit on error.
 */
import type { Command } from "commander";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Config } from "../config.js";
import { createDynamoClient, createTable, describeTable } from "../lookup/dynamodb-tier.js";
import { CliFailure, EXIT_USAGE, type CliContext } from "./context.js";

/** Options shared by both verbs; `client` lets tests and embedders bring their own. */
export interface TableVerbOptions {
  /** Overrides `dynamodb.table`. */
  table?: string;
  client?: DynamoDBDocumentClient;
  /** Notes for the user (e.g. "TTL not supported"); stderr in the CLI. */
  stderr?: NodeJS.WritableStream;
}

function tableName(cfg: Readonly<Config>, opts: TableVerbOptions): string {
  const name = opts.table ?? cfg.dynamodb.table;
  if (!name) throw new CliFailure("no table name: pass one or set dynamodb.table (DNSGEO_DYNAMODB_TABLE)", EXIT_USAGE);
  return name;
}

function clientFor(cfg: Readonly<Config>, opts: TableVerbOptions): { client: DynamoDBDocumentClient; owned: boolean } {
  if (opts.client) return { client: opts.client, owned: false };
  const client = createDynamoClient({
    endpoint: cfg.dynamodb.endpoint,
    region: cfg.dynamodb.region,
    connectTimeoutMs: cfg.dynamodb.connect_timeout_ms,
    requestTimeoutMs: cfg.dynamodb.request_timeout_ms,
    maxAttempts: 3,
  });
  return { client, owned: true };
}

function failure(e: unknown, what: string, table: string): CliFailure {
  const err = e as Error;
  return new CliFailure(`${what} ${table}: ${err.name ? `${err.name}: ` : ""}${err.message ?? String(e)}`.replace(/\s*\n\s*/g, " "), 1);
}

/** Creates the table (an existing one is kept) and turns TTL on; prints the result as JSON. Returns the exit code. */
export async function tableCreate(cfg: Readonly<Config>, out: NodeJS.WritableStream, opts: TableVerbOptions = {}): Promise<number> {
  const table = tableName(cfg, opts);
  const { client, owned } = clientFor(cfg, opts);
  try {
    const res = await createTable(client, table);
    out.write(JSON.stringify(res) + "\n");
    if (res.message) opts.stderr?.write(`dnsgeo: note: ${res.message}\n`);
    return 0;
  } catch (e) {
    throw failure(e, "cannot create table", table);
  } finally {
    if (owned) client.destroy();
  }
}

/** Prints the table's status, key schema, billing mode, item count and TTL setting as JSON. Returns the exit code. */
export async function tableDescribe(cfg: Readonly<Config>, out: NodeJS.WritableStream, opts: TableVerbOptions = {}): Promise<number> {
  const table = tableName(cfg, opts);
  const { client, owned } = clientFor(cfg, opts);
  try {
    const res = await describeTable(client, table);
    out.write(JSON.stringify(res) + "\n");
    if (!res.keyOk) {
      throw new CliFailure(`table ${table} exists but its key is not just "ip" (string); dnsgeo cannot use it`, 1);
    }
    if (res.ttl === "unsupported") opts.stderr?.write("dnsgeo: note: this endpoint does not support TTL; expired items are filtered on read but never deleted\n");
    return 0;
  } catch (e) {
    if (e instanceof CliFailure) throw e;
    throw failure(e, "cannot describe table", table);
  } finally {
    if (owned) client.destroy();
  }
}

/** Registers `table create|describe`. */
export function registerTable(program: Command, ctx: CliContext): void {
  const table = program.command("table").description("manage the shared DynamoDB cache table (partition key ip, TTL on expires_at)");
  table
    .command("create")
    .description("create the table (PAY_PER_REQUEST) and turn on TTL; an existing table is kept")
    .argument("[name]", "table name (default dynamodb.table / DNSGEO_DYNAMODB_TABLE)")
    .action(async (name: string | undefined) => {
      await tableCreate(ctx.loadConfig(), ctx.stdout, { table: name, stderr: ctx.stderr });
    });
  table
    .command("describe")
    .description("print the table's status, key, billing mode, item count and TTL setting as JSON")
    .argument("[name]", "table name (default dynamodb.table / DNSGEO_DYNAMODB_TABLE)")
    .action(async (name: string | undefined) => {
      await tableDescribe(ctx.loadConfig(), ctx.stdout, { table: name, stderr: ctx.stderr });
    });
}
