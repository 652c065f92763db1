import { afterAll, beforeAll } from "vitest";
import { startDynalite, type Dynalite } from "../../helpers/dynalite.js";
import { dynaliteTier } from "../../helpers/lookup-tiers.js";
import { runLookupContract } from "../../unit/lookup/contract.js";

let dyn: Dynalite;
beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn.close();
});

runLookupContract("dynamodb (dynalite)", async ({ clock, staleMaxS }) => {
  const tier = dynaliteTier(dyn, await dyn.newTable(), clock, staleMaxS);
  return { lookup: tier, flush: () => tier.flush() };
});
