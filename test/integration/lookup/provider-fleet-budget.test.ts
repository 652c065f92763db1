import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import { BUDGET_KEY_PREFIX, DynamoFleetBudget } from "../../../src/lookup/fleet-budget.js";
import { createDynamoClient } from "../../../src/lookup/dynamodb-tier.js";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";
import { startDynalite, FAKE_CREDENTIALS, type Dynalite } from "../../helpers/dynalite.js";

let db: Dynalite;
beforeAll(async () => {
  db = await startDynalite();
});
afterAll(async () => {
  await db?.close();
});

function manualClock(start: number) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe("DynamoFleetBudget", () => {
  it("lets the whole fleet send at most the window's budget, then opens at the next window", async () => {
    // Prepare: two processes sharing one table, 3 requests per 60 s window.
    const table = await db.newTable();
    const clock = manualClock(1_700_000_040_000);
    const a = new DynamoFleetBudget({ client: db.client(), table, requestsPerWindow: 3, windowS: 60, callTimeoutMs: 2000, clock });
    const b = new DynamoFleetBudget({ client: db.client(), table, requestsPerWindow: 3, windowS: 60, callTimeoutMs: 2000, clock });
    // Act
    const answers = [await a.tryAcquire(), await b.tryAcquire(), await a.tryAcquire(), await b.tryAcquire(), await a.tryAcquire()];
    clock.advance(60_000);
    const next = await b.tryAcquire();
    // Assess
    expect(answers.map((x) => x.ok)).toEqual([true, true, true, false, false]);
    expect(answers[3]?.retryAtMs).toBe(1_700_000_040_000 - (1_700_000_040 % 60) * 1000 + 60_000);
    expect(next.ok).toBe(true);
    const item = await db.client().send(new GetCommand({ TableName: table, Key: { ip: `${BUDGET_KEY_PREFIX}${1_700_000_040 - (1_700_000_040 % 60)}` } }));
    expect(item.Item?.n).toBe(3);
    expect(item.Item?.expires_at).toBeGreaterThan(1_700_000_040);
  });

  it("makes the limiter hand its local send back when the fleet is out of budget", async () => {
    // Prepare
    const table = await db.newTable();
    const clock = manualClock(1_700_000_000_000);
    const shared = new DynamoFleetBudget({ client: db.client(), table, requestsPerWindow: 1, windowS: 60, callTimeoutMs: 2000, clock });
    const other = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, shared });
    const mine = new RateLimiter({ requestsPerWindow: 15, windowS: 60, clock, shared });
    // Act
    const first = await other.acquire();
    const second = await mine.acquire();
    // Assess
    expect(first).toBeDefined();
    expect(second).toBeUndefined();
    expect(mine.waitMs()).toBe(40_000); // 1 700 000 000 s is 20 s into its 60 s window
  });

  it("answers yes (local budget only) when DynamoDB cannot be reached", async () => {
    // Prepare: a port nothing listens on.
    const client = createDynamoClient({ endpoint: "http://127.0.0.1:9", region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 200, requestTimeoutMs: 300 });
    const budget = new DynamoFleetBudget({ client, table: "absent", requestsPerWindow: 1, windowS: 60, callTimeoutMs: 500 });
    // Act
    const r = await Promise.all([budget.tryAcquire(), budget.tryAcquire()]);
    // Assess
    expect(r.map((x) => x.ok)).toEqual([true, true]);
    client.destroy();
  });
});
