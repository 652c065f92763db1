import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { runLookupContract } from "./contract.js";

runLookupContract("memory", ({ clock, staleMaxS }) => ({ lookup: new MemoryTier({ maxEntries: 10_000, clock, staleMaxS }) }));
