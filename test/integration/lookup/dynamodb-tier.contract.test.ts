import { afterAll, beforeAll } from "vitest";
import { silentLogger } from "../../../src/observability/logger.js";
import { DynamoDbTier } from "../../../src/lookup/dynamodb-tier.js";
import { startDynalite, type Dynalite } from "../../helpers/dynalite.js";
import { runLookupContract } from "../../unit/lookup/contract.js";

let dyn: Dynalite;
beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn.close();
});

runLookupContract("dynamodb (dynalite)", async ({ clock, staleMaxS }) => {
  const tier = new DynamoDbTier({
    client: dyn.client(),
    table: await dyn.newTable(),
    staleMaxS,
    clock,
    logger: silentLogger(),
    callTimeoutMs: 5000,
    flushIntervalMs: 60_000,
    queueMax: 10_000,
  });
  return { lookup: tier, flush: () => tier.flush() };
});
