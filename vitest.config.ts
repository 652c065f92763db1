import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Vitest's default on two cores is one file at a time; most files spend their time
    // waiting on child processes (dnsgeo, Fluent Bit, redis-server, dynalite), so two
    // at once take the suite from ~460 s to ~330 s on a 2-core machine.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ["default"],
  },
});
