import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig, sqlitePath } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { SqliteTier } from "../../../src/lookup/sqlite-tier.js";
import { cachePurge, cacheStats } from "../../../src/cli/cache.js";
import { positive } from "../lookup/contract.js";

function sink(): { out: PassThrough; json(): Record<string, unknown> } {
  const out = new PassThrough();
  let text = "";
  out.on("data", (b: Buffer) => (text += b.toString()));
  return { out, json: () => JSON.parse(text.trim().split("\n").pop() as string) };
}

describe("dnsgeo cache stats|purge", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dnsgeo-cli-cache-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reports a missing file without creating it", () => {
    const cfg = loadConfig({ overrides: { data_dir: dir } });
    const s = sink();
    expect(cacheStats(cfg, s.out)).toBe(0);
    expect(s.json()).toEqual({ path: sqlitePath(cfg), exists: false, rows: 0 });
    expect(existsSync(sqlitePath(cfg))).toBe(false);
  });

  it("prints stats, then purges expired rows, then everything", () => {
    // Prepare: two fresh rows and one expired an hour ago.
    const cfg = loadConfig({ overrides: { data_dir: dir } });
    const clock = { now: () => Date.now() };
    const seed = SqliteTier.open({ path: sqlitePath(cfg), maxRows: 100, writeBatch: 100, flushIntervalMs: 60_000, queueMax: 100, staleMaxS: 0, logger: silentLogger(), clock });
    seed.set([positive("8.8.8.8", clock), positive("1.1.1.1", clock), positive("9.9.9.9", clock, -3600)]);
    seed.close();
    // Act + Assess
    const stats = sink();
    cacheStats(cfg, stats.out);
    expect(stats.json()).toMatchObject({ exists: true, rows: 3, expiredRows: 1, schemaVersion: 1 });
    expect(stats.json().fileBytes).toBeGreaterThan(0);
    const expired = sink();
    expect(cachePurge(cfg, expired.out, { expiredOnly: true })).toBe(0);
    expect(expired.json()).toMatchObject({ deleted: 1, expiredOnly: true, rows: 2 });
    const all = sink();
    cachePurge(cfg, all.out);
    expect(all.json()).toMatchObject({ deleted: 2, expiredOnly: false, rows: 0 });
  });
});
