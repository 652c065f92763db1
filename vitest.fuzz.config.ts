import { defineConfig } from "vitest/config";

/** `npm run fuzz`: the fuzz targets at full count (100 000 cases in-process, 10 000 over the wire). */
export default defineConfig({
  test: {
    include: ["test/fuzz/**/*.test.ts"],
    env: { DNSGEO_FUZZ_RUNS: process.env.DNSGEO_FUZZ_RUNS ?? "100000" },
    testTimeout: 3_600_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["default"],
  },
});
