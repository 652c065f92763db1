import { afterAll, beforeAll, describe } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { RedisTier, createRedisClient } from "../../../src/lookup/redis-tier.js";
import { NO_REDIS_REASON, findRedisServer, startRedisServer, type RedisServer } from "../../helpers/redis-server.js";
import { runLookupContract } from "../../unit/lookup/contract.js";

const bin = findRedisServer();
let seq = 0;

describe.skipIf(!bin)(`redis tier against a real redis-server${bin ? "" : ` (skipped: ${NO_REDIS_REASON})`}`, () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedisServer(bin as string);
  });
  afterAll(async () => {
    await server.close();
  });

  runLookupContract("redis", async ({ clock, staleMaxS }) => {
    const tier = new RedisTier({
      client: createRedisClient({ url: server.url, connectTimeoutMs: 2000, commandTimeoutMs: 5000 }),
      ownsClient: true,
      // Each subject its own key space on the one server.
      keyPrefix: `contract-${++seq}:`,
      staleMaxS,
      clock,
      logger: silentLogger(),
      commandTimeoutMs: 5000,
      flushIntervalMs: 60_000,
      writeBatch: 500,
      queueMax: 10_000,
    });
    await tier.waitReady(5000);
    return { lookup: tier, flush: () => tier.flush() };
  });
});
