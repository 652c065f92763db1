/**
 * L2: the DynamoDB table the whole fleet shares (partition key `ip`, TTL
 * attribute `expires_at`). Reads are BatchGetItem (≤100 keys per call), writes
 * go through a write-behind queue as BatchWriteItem (≤25 items per call).
 * Every call carries an AbortSignal combined from the caller's signal and a
 * per-call timeout, so a hung endpoint can never hold a batch; throttling and
 * unprocessed keys are retried with jittered backoff within that signal.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
  type DynamoDBClientConfig,
} from "@aws-sdk/client-dynamodb";
import { BatchGetCommand, BatchWriteCommand, DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { BurstLog } from "./burst-log.js";
import { fromItem, serveable, toItem } from "./entry-codec.js";
import { type Clock, type Entry, type GetOptions, type Lookup, nowS, systemClock } from "./lookup.js";
import { PendingWrites } from "./write-behind.js";

/** BatchGetItem's limit. */
const GET_CHUNK = 100;
/** BatchWriteItem's limit. */
const WRITE_CHUNK = 25;
/** Write calls in flight at once during a flush. */
const WRITE_PARALLEL = 4;

const THROTTLING = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "Throttling",
  "TooManyRequestsException",
]);

/** True for errors DynamoDB uses to say "slow down". */
export function isThrottle(e: unknown): boolean {
  const name = (e as { name?: unknown; __type?: unknown } | null)?.name;
  return typeof name === "string" && THROTTLING.has(name);
}

export interface DynamoClientOptions {
  /** DynamoDB Local, dynalite, a VPC endpoint. */
  endpoint?: string;
  region?: string;
  /** TCP connect timeout, milliseconds. */
  connectTimeoutMs: number;
  /** Longest wait for a response, milliseconds. */
  requestTimeoutMs: number;
  /** Default 1: the tier retries throttling itself, within the caller's deadline. */
  maxAttempts?: number;
  /** Explicit credentials (tests); otherwise the standard AWS chain (env, profile, role). */
  credentials?: DynamoDBClientConfig["credentials"];
}

/**
 * A document client with explicit timeouts. Numbers stay JS numbers and
 * undefined values are left out of items.
 */
export function createDynamoClient(opts: DynamoClientOptions): DynamoDBDocumentClient {
  const config: DynamoDBClientConfig = {
    region: opts.region ?? (opts.endpoint ? "us-east-1" : undefined),
    maxAttempts: opts.maxAttempts ?? 1,
    // Without throwOnRequestTimeout this SDK only logs a warning when requestTimeout passes and keeps waiting.
    requestHandler: { connectionTimeout: opts.connectTimeoutMs, requestTimeout: opts.requestTimeoutMs, throwOnRequestTimeout: true },
  };
  if (opts.endpoint) config.endpoint = opts.endpoint;
  if (opts.credentials) config.credentials = opts.credentials;
  const base = new DynamoDBClient(config);
  return DynamoDBDocumentClient.from(base, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
    unmarshallOptions: { wrapNumbers: false },
  });
}

export interface DynamoDbTierOptions {
  /** Injected client (tests point it at dynalite). Not destroyed by `close()` unless `ownsClient`. */
  client: DynamoDBDocumentClient;
  table: string;
  /** Expired items may be served (stale) this long past expiry, seconds. */
  staleMaxS: number;
  logger: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** Longest one SDK call may take, milliseconds (also cut by the caller's signal). */
  callTimeoutMs: number;
  /** Write-behind flush interval, milliseconds. */
  flushIntervalMs: number;
  /** Pending writes kept; past it the oldest are dropped and counted. */
  queueMax: number;
  /** Retries of throttled calls and unprocessed keys/items per call. Default 5. */
  maxRetries?: number;
  /** First backoff, milliseconds; doubles per retry, full jitter. Default 20. */
  backoffBaseMs?: number;
  /** Destroy the client on close. */
  ownsClient?: boolean;
}

type Item = Record<string, unknown>;

/** The DynamoDB tier. */
export class DynamoDbTier implements Lookup {
  readonly name = "dynamodb";
  private readonly pending: PendingWrites;
  private readonly clock: Clock;
  private readonly burst: BurstLog;
  private readonly maxRetries: number;
  private readonly backoffBaseMs: number;
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: DynamoDbTierOptions) {
    this.pending = new PendingWrites("dynamodb_write", opts.queueMax, opts.metrics);
    this.clock = opts.clock ?? systemClock;
    this.burst = new BurstLog(opts.logger);
    this.maxRetries = opts.maxRetries ?? 5;
    this.backoffBaseMs = opts.backoffBaseMs ?? 20;
    this.timer = setInterval(() => void this.flush(), opts.flushIntervalMs);
    this.timer.unref();
  }

  /** Reads the IPs in calls of ≤100 keys; rejects when the signal aborts or a call fails. */
  async get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    if (ips.length === 0) return out;
    const unique = Array.from(new Set(ips));
    const chunks: string[][] = [];
    for (let i = 0; i < unique.length; i += GET_CHUNK) chunks.push(unique.slice(i, i + GET_CHUNK));
    const results = await Promise.all(chunks.map((c) => this.batchGet(c, opts?.signal)));
    const now = nowS(this.clock);
    // Writes not flushed yet are answered too (read-your-writes).
    if (this.pending.size > 0) {
      for (const ip of unique) {
        const p = this.pending.get(ip);
        const served = p && serveable(p, now, opts?.allowStale, this.opts.staleMaxS);
        if (served) out.set(ip, served);
      }
    }
    for (const items of results) {
      for (const item of items) {
        const e = fromItem(item);
        if (!e) continue;
        if (out.has(e.ip)) continue;
        const served = serveable(e, now, opts?.allowStale, this.opts.staleMaxS);
        if (served) out.set(e.ip, served);
      }
    }
    return out;
  }

  private async batchGet(ips: string[], signal: AbortSignal | undefined): Promise<Item[]> {
    const table = this.opts.table;
    const items: Item[] = [];
    let keys: Item[] = ips.map((ip) => ({ ip }));
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.opts.client.send(new BatchGetCommand({ RequestItems: { [table]: { Keys: keys } } }), {
          abortSignal: this.callSignal(signal),
        });
        const got = res.Responses?.[table];
        if (got) for (const it of got) items.push(it);
        const left = res.UnprocessedKeys?.[table]?.Keys;
        if (!left || left.length === 0) return items;
        keys = left;
      } catch (e) {
        if (!isThrottle(e)) throw e;
      }
      if (attempt >= this.maxRetries) {
        const err = new Error(`dynamodb: ${keys.length} keys still unprocessed after ${attempt + 1} attempts`);
        err.name = "ThrottlingException";
        throw err;
      }
      await this.backoff(attempt, signal);
    }
  }

  /** Queues the entries; they reach the table with the next flush. */
  set(entries: readonly Entry[]): void {
    if (this.closing) return;
    this.pending.add(entries);
  }

  /** Writes everything queued so far (one flush at a time); never rejects. */
  flush(): Promise<void> {
    return this.pending.flush((batch) => this.writeAll(batch));
  }

  private async writeAll(batch: Entry[]): Promise<void> {
    const chunks: Entry[][] = [];
    for (let i = 0; i < batch.length; i += WRITE_CHUNK) chunks.push(batch.slice(i, i + WRITE_CHUNK));
    let next = 0;
    let failure: unknown;
    let dropped = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const chunk = chunks[next++] as Entry[];
        // Once a call failed for good (endpoint down, timeout), the rest would only wait out
        // the same timeout one by one — which would also stretch close() without bound.
        if (failure !== undefined) {
          dropped += chunk.length;
          continue;
        }
        try {
          await this.batchWrite(chunk);
        } catch (e) {
          failure = e;
          dropped += chunk.length;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITE_PARALLEL, chunks.length) }, worker));
    if (failure !== undefined) {
      this.pending.countDropped(dropped);
      this.burst.warn("write", { table: this.opts.table, err: messageOf(failure), dropped }, "dynamodb write failed; queued items dropped");
    }
  }

  private async batchWrite(entries: Entry[]): Promise<void> {
    const table = this.opts.table;
    let requests: Array<{ PutRequest?: { Item: Item | undefined } }> = entries.map((e) => ({
      PutRequest: { Item: toItem(e) as unknown as Item },
    }));
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.opts.client.send(
          new BatchWriteCommand({ RequestItems: { [table]: requests } }),
          { abortSignal: this.callSignal(undefined) },
        );
        const left = res.UnprocessedItems?.[table];
        if (!left || left.length === 0) return;
        requests = left;
      } catch (e) {
        if (!isThrottle(e)) throw e;
      }
      if (attempt >= this.maxRetries) throw new Error(`${requests.length} items still unprocessed after ${attempt + 1} attempts`);
      await this.backoff(attempt, undefined);
    }
  }

  private callSignal(signal: AbortSignal | undefined): AbortSignal {
    const t = AbortSignal.timeout(this.opts.callTimeoutMs);
    return signal ? AbortSignal.any([signal, t]) : t;
  }

  /** Full-jitter exponential backoff that ends early (rejecting) when the signal aborts. */
  private backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    const ms = Math.random() * this.backoffBaseMs * 2 ** attempt;
    return sleep(ms, undefined, signal ? { signal } : undefined);
  }

  /** Flushes the queue, then stops. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      clearInterval(this.timer);
      this.closing = this.flush().finally(() => {
        if (this.opts.ownsClient) this.opts.client.destroy();
      });
    }
    return this.closing;
  }
}

/** What `createTable` did. */
export interface CreateTableResult {
  table: string;
  created: boolean;
  status: string | undefined;
  /** "enabled" when TTL on `expires_at` is on; "unsupported" when the endpoint can't do TTL. */
  ttl: "enabled" | "unsupported";
  message?: string;
}

/**
 * Creates the table (partition key `ip` (S), PAY_PER_REQUEST), waits until it
 * is ACTIVE, then turns on TTL for `expires_at`. An existing table is kept.
 * Endpoints without TTL (dynalite) get a clear message: expired items are then
 * only filtered on read and never deleted.
 */
export async function createTable(client: DynamoDBDocumentClient, table: string, opts: { waitMs?: number } = {}): Promise<CreateTableResult> {
  let created = true;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: table,
        AttributeDefinitions: [{ AttributeName: "ip", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "ip", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
  } catch (e) {
    if ((e as Error).name !== "ResourceInUseException") throw e;
    created = false;
  }
  let status: string | undefined;
  const until = Date.now() + (opts.waitMs ?? 120_000);
  for (;;) {
    status = (await client.send(new DescribeTableCommand({ TableName: table }))).Table?.TableStatus;
    if (status === "ACTIVE" || Date.now() > until) break;
    await sleep(1000);
  }
  const result: CreateTableResult = { table, created, status, ttl: "enabled" };
  try {
    await client.send(
      new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: "expires_at", Enabled: true } }),
    );
  } catch (e) {
    const name = (e as Error).name;
    const msg = (e as Error).message ?? "";
    if (name === "ValidationException" && /already enabled/i.test(msg)) return result;
    if (isUnsupported(e)) {
      result.ttl = "unsupported";
      result.message = `TTL is not supported by this endpoint (${name}); expired items are filtered on read but never deleted`;
      return result;
    }
    throw e;
  }
  return result;
}

/** What `describeTable` reports. */
export interface DescribeTableResult {
  table: string;
  status: string | undefined;
  keySchema: Array<{ name: string | undefined; type: string | undefined }>;
  billingMode: string | undefined;
  itemCount: number | undefined;
  sizeBytes: number | undefined;
  ttl: { status: string | undefined; attribute: string | undefined } | "unsupported";
  /** False when the table's key is not exactly `ip` (S). */
  keyOk: boolean;
}

/** Describes the table and its TTL setting. */
export async function describeTable(client: DynamoDBDocumentClient, table: string): Promise<DescribeTableResult> {
  const t = (await client.send(new DescribeTableCommand({ TableName: table }))).Table;
  const keySchema = (t?.KeySchema ?? []).map((k) => ({ name: k.AttributeName, type: k.KeyType }));
  const ipType = t?.AttributeDefinitions?.find((a) => a.AttributeName === "ip")?.AttributeType;
  let ttl: DescribeTableResult["ttl"];
  try {
    const d = (await client.send(new DescribeTimeToLiveCommand({ TableName: table }))).TimeToLiveDescription;
    ttl = { status: d?.TimeToLiveStatus, attribute: d?.AttributeName };
  } catch (e) {
    if (!isUnsupported(e)) throw e;
    ttl = "unsupported";
  }
  return {
    table,
    status: t?.TableStatus,
    keySchema,
    billingMode: t?.BillingModeSummary?.BillingMode ?? (t?.ProvisionedThroughput ? "PROVISIONED" : undefined),
    itemCount: t?.ItemCount,
    sizeBytes: t?.TableSizeBytes,
    ttl,
    keyOk: keySchema.length === 1 && keySchema[0]?.name === "ip" && keySchema[0]?.type === "HASH" && ipType === "S",
  };
}

function isUnsupported(e: unknown): boolean {
  const name = (e as Error).name ?? "";
  const msg = (e as Error).message ?? "";
  return /UnknownOperation|NotImplemented|UnrecognizedClient|InvalidAction/i.test(name) || /unknown operation|not (supported|implemented)/i.test(msg);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
