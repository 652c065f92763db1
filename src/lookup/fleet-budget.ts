/**
 * The optional fleet budget (`dynamodb.fleet_budget`): processes behind one
 * NAT share ip-api's per-egress-IP limit, so each send also takes one unit
 * from a counter item in the DynamoDB table (docs/caching.md, "ip-api limits").
 *
 * The item's key is `#budget#<window start, epoch s>` in the table's `ip`
 * attribute (never a valid IP, so it can't collide with a cached answer);
 * `ADD n :one` runs only while `n < max`, and `expires_at` lets DynamoDB TTL
 * remove it. Windows are aligned to epoch multiples of `window_s`, which
 * ip-api's own windows need not be: two bursts either side of a boundary
 * could still meet in one ip-api window. The `X-Rl` headers every process
 * reads (they count the shared egress IP) catch that case, and each
 * process's local sliding-window limiter still applies.
 *
 * When DynamoDB cannot be reached the budget answers yes: the local limiter
 * alone then guards the limit, and lookups never wait on a down table.
 */
import { UpdateCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Clock } from "./lookup.js";
import { systemClock } from "./lookup.js";
import type { SharedBudget } from "./rate-limiter.js";

export interface FleetBudgetOptions {
  client: DynamoDBDocumentClient;
  table: string;
  /** Batch requests the whole fleet may send per window. */
  requestsPerWindow: number;
  windowS: number;
  /** Longest the counter update may take, milliseconds. */
  callTimeoutMs: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
}

/** Key prefix of budget items in the cache table. */
export const BUDGET_KEY_PREFIX = "#budget#";

export class DynamoFleetBudget implements SharedBudget {
  private readonly clock: Clock;
  private loggedDown = false;

  constructor(private readonly opts: FleetBudgetOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  async tryAcquire(): Promise<{ ok: boolean; retryAtMs?: number }> {
    const nowS = Math.floor(this.clock.now() / 1000);
    const start = nowS - (nowS % this.opts.windowS);
    const end = start + this.opts.windowS;
    try {
      await this.opts.client.send(
        new UpdateCommand({
          TableName: this.opts.table,
          Key: { ip: `${BUDGET_KEY_PREFIX}${start}` },
          UpdateExpression: "ADD n :one SET expires_at = :exp",
          ConditionExpression: "attribute_not_exists(n) OR n < :max",
          ExpressionAttributeValues: { ":one": 1, ":max": this.opts.requestsPerWindow, ":exp": end + this.opts.windowS },
        }),
        { abortSignal: AbortSignal.timeout(this.opts.callTimeoutMs) },
      );
      this.loggedDown = false;
      return { ok: true };
    } catch (e) {
      if ((e as { name?: string }).name === "ConditionalCheckFailedException") return { ok: false, retryAtMs: end * 1000 };
      this.opts.metrics?.tierErrors.inc({ tier: "dynamodb" });
      if (!this.loggedDown) {
        this.loggedDown = true;
        this.opts.logger?.warn({ table: this.opts.table, err: (e as Error).message }, "fleet budget unreachable; using the local ip-api budget only");
      }
      return { ok: true };
    }
  }
}
