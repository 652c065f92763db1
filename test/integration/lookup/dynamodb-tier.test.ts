import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { createDynamoClient, createTable, describeTable, DynamoDbTier, type DynamoDbTierOptions } from "../../../src/lookup/dynamodb-tier.js";
import { FAKE_CREDENTIALS, startDynalite, type Dynalite } from "../../helpers/dynalite.js";
import { ManualClock, ipv4s, negative, positive } from "../../unit/lookup/contract.js";

/** A scripted DynamoDB endpoint: each call is answered by the next handler (the last one repeats). */
async function scripted(
  handlers: Array<(target: string, body: Record<string, unknown>) => { status: number; body: unknown }>,
): Promise<{ endpoint: string; calls: Array<{ target: string; body: Record<string, unknown> }>; close(): Promise<void> }> {
  const calls: Array<{ target: string; body: Record<string, unknown> }> = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      const target = String(req.headers["x-amz-target"] ?? "").split(".")[1] ?? "";
      const body = JSON.parse(raw || "{}") as Record<string, unknown>;
      calls.push({ target, body });
      const h = handlers[Math.min(calls.length - 1, handlers.length - 1)] as (typeof handlers)[number];
      const out = h(target, body);
      res.writeHead(out.status, { "content-type": "application/x-amz-json-1.0" });
      res.end(JSON.stringify(out.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

const THROTTLE = {
  status: 400,
  body: { __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", message: "slow down" },
};

function wireItem(ip: string, expiresAt: number): Record<string, unknown> {
  return {
    ip: { S: ip },
    v: { N: "1" },
    src: { S: "ip-api" },
    fetched_at: { N: "1" },
    expires_at: { N: String(expiresAt) },
    geo: { M: { ip: { S: ip }, source: { S: "ip-api" }, fetchedAt: { N: "1" }, lat: { N: "1.5" } } },
  };
}

describe("DynamoDbTier against dynalite", () => {
  let dyn: Dynalite;
  const tiers: DynamoDbTier[] = [];
  beforeAll(async () => {
    dyn = await startDynalite();
  });
  afterEach(async () => {
    for (const t of tiers.splice(0)) await t.close();
  });
  afterAll(async () => {
    await dyn.close();
  });

  function tier(table: string, over: Partial<DynamoDbTierOptions> = {}): DynamoDbTier {
    const t = new DynamoDbTier(
      Object.assign(
        {
          client: dyn.client(),
          table,
          staleMaxS: 3600,
          clock: new ManualClock(),
          logger: silentLogger(),
          callTimeoutMs: 5000,
          flushIntervalMs: 60_000,
          queueMax: 10_000,
        },
        over,
      ),
    );
    tiers.push(t);
    return t;
  }

  it("creates a table keyed by ip only and says clearly that TTL is unsupported here", async () => {
    const client = dyn.client();
    const res = await createTable(client, "dnsgeo-create-test");
    expect(res).toMatchObject({ table: "dnsgeo-create-test", created: true, status: "ACTIVE", ttl: "unsupported" });
    expect(res.message).toMatch(/TTL is not supported by this endpoint.*filtered on read/);
    const again = await createTable(client, "dnsgeo-create-test");
    expect(again.created).toBe(false);
    const d = await describeTable(client, "dnsgeo-create-test");
    expect(d).toMatchObject({ table: "dnsgeo-create-test", status: "ACTIVE", keyOk: true, billingMode: "PAY_PER_REQUEST" });
    expect(d.keySchema).toEqual([{ name: "ip", type: "HASH" }]);
  });

  it("stores the shared item shape {ip, v, geo, src, fetched_at, expires_at, neg}", async () => {
    const table = await dyn.newTable();
    const clock = new ManualClock();
    const t = tier(table, { clock });
    const pos = positive("2001:4860:4860::8888", clock);
    const neg = negative("203.0.113.1", clock);
    t.set([pos, neg]);
    await t.flush();
    const client = dyn.client();
    const a = (await client.send(new GetCommand({ TableName: table, Key: { ip: pos.ip } }))).Item;
    const b = (await client.send(new GetCommand({ TableName: table, Key: { ip: neg.ip } }))).Item;
    expect(a).toEqual({ ip: pos.ip, v: 1, geo: pos.geo, src: "ip-api", fetched_at: pos.fetchedAt, expires_at: pos.expiresAt });
    expect(b).toEqual({ ip: neg.ip, v: 1, src: "ip-api", fetched_at: neg.fetchedAt, expires_at: neg.expiresAt, neg: true });
  });

  it("flushes on close, and the write-behind timer flushes on its own", async () => {
    const table = await dyn.newTable();
    const clock = new ManualClock();
    const a = tier(table, { clock });
    a.set(ipv4s(60).map((ip) => positive(ip, clock)));
    await a.close();
    const b = tier(table, { clock });
    expect((await b.get(ipv4s(60))).size).toBe(60);
    const c = tier(table, { clock, flushIntervalMs: 10 });
    c.set([positive("1.1.1.1", clock)]);
    const reader = tier(table, { clock });
    await expect.poll(async () => (await reader.get(["1.1.1.1"])).size, { timeout: 5000 }).toBe(1);
  });

  it("drops the oldest queued writes past queueMax and counts them", async () => {
    const table = await dyn.newTable();
    const clock = new ManualClock();
    const metrics = createMetrics();
    const t = tier(table, { clock, queueMax: 3, metrics });
    t.set(ipv4s(5).map((ip) => positive(ip, clock)));
    await t.flush();
    const got = await tier(table, { clock }).get(ipv4s(5));
    expect([...got.keys()].sort()).toEqual(ipv4s(5).slice(2).sort());
    const m = await metrics.registry.getSingleMetric("dnsgeo_queue_dropped_total")?.get();
    expect(m?.values.find((v) => v.labels.queue === "dynamodb_write")?.value).toBe(2);
  });
});

describe("DynamoDbTier against a scripted endpoint", () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  function tierAt(endpoint: string, table: string, over: Partial<DynamoDbTierOptions> = {}): DynamoDbTier {
    const t = new DynamoDbTier(
      Object.assign(
        {
          client: createDynamoClient({ endpoint, region: "us-east-1", credentials: FAKE_CREDENTIALS, connectTimeoutMs: 1000, requestTimeoutMs: 2000 }),
          table,
          staleMaxS: 3600,
          clock: new ManualClock(),
          logger: silentLogger(),
          callTimeoutMs: 2000,
          flushIntervalMs: 60_000,
          queueMax: 10_000,
          backoffBaseMs: 1,
          ownsClient: true,
        },
        over,
      ),
    );
    closers.push(() => t.close());
    return t;
  }

  it("retries UnprocessedKeys and throttling until every key is answered", async () => {
    // Prepare: throttle, then answer one key and leave the other unprocessed, then answer it.
    const clock = new ManualClock();
    const exp = Math.floor(clock.now() / 1000) + 600;
    const srv = await scripted([
      () => THROTTLE,
      () => ({
        status: 200,
        body: { Responses: { t: [wireItem("8.8.8.8", exp)] }, UnprocessedKeys: { t: { Keys: [{ ip: { S: "1.1.1.1" } }] } } },
      }),
      () => ({ status: 200, body: { Responses: { t: [wireItem("1.1.1.1", exp)] }, UnprocessedKeys: {} } }),
    ]);
    closers.push(srv.close);
    const t = tierAt(srv.endpoint, "t", { clock });
    // Act
    const got = await t.get(["8.8.8.8", "1.1.1.1"]);
    // Assess
    expect([...got.keys()].sort()).toEqual(["1.1.1.1", "8.8.8.8"]);
    expect(got.get("8.8.8.8")?.geo?.lat).toBe(1.5);
    expect(srv.calls.map((c) => c.target)).toEqual(["BatchGetItem", "BatchGetItem", "BatchGetItem"]);
    const third = srv.calls[2]?.body as { RequestItems: { t: { Keys: unknown[] } } };
    expect(third.RequestItems.t.Keys).toEqual([{ ip: { S: "1.1.1.1" } }]);
  });

  it("splits reads into calls of at most 100 keys and writes into calls of at most 25", async () => {
    const srv = await scripted([
      (target) => ({ status: 200, body: target === "BatchGetItem" ? { Responses: { t: [] } } : { UnprocessedItems: {} } }),
    ]);
    closers.push(srv.close);
    const clock = new ManualClock();
    const t = tierAt(srv.endpoint, "t", { clock });
    await t.get(ipv4s(250));
    t.set(ipv4s(60).map((ip) => positive(ip, clock)));
    await t.flush();
    const sizes = srv.calls.map((c) => {
      const ri = c.body.RequestItems as { t: { Keys?: unknown[] } | unknown[] };
      return `${c.target}:${Array.isArray(ri.t) ? ri.t.length : (ri.t.Keys?.length ?? 0)}`;
    });
    expect(sizes.filter((s) => s.startsWith("BatchGetItem")).sort()).toEqual(["BatchGetItem:100", "BatchGetItem:100", "BatchGetItem:50"]);
    expect(sizes.filter((s) => s.startsWith("BatchWriteItem")).sort()).toEqual(["BatchWriteItem:10", "BatchWriteItem:25", "BatchWriteItem:25"]);
  });

  it("retries UnprocessedItems on write", async () => {
    const srv = await scripted([
      (_t, body) => ({ status: 200, body: { UnprocessedItems: { t: (body.RequestItems as { t: unknown[] }).t.slice(0, 2) } } }),
      () => ({ status: 200, body: { UnprocessedItems: {} } }),
    ]);
    closers.push(srv.close);
    const clock = new ManualClock();
    const t = tierAt(srv.endpoint, "t", { clock });
    t.set(ipv4s(5).map((ip) => positive(ip, clock)));
    await t.flush();
    expect(srv.calls).toHaveLength(2);
    expect((srv.calls[1]?.body.RequestItems as { t: unknown[] }).t).toHaveLength(2);
  });

  it("gives up on a read after maxRetries throttled attempts", async () => {
    const srv = await scripted([() => THROTTLE]);
    closers.push(srv.close);
    const t = tierAt(srv.endpoint, "t", { maxRetries: 2 });
    await expect(t.get(["8.8.8.8"])).rejects.toThrow();
    expect(srv.calls).toHaveLength(3);
  });
});
