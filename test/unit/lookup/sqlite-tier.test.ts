import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMetrics } from "../../../src/observability/metrics.js";
import { SQLITE_SCHEMA_VERSION, SqliteTier, type SqliteTierOptions } from "../../../src/lookup/sqlite-tier.js";
import { ManualClock, ipv4s, negative, positive } from "./contract.js";
import { captureLog } from "../../helpers/log-capture.js";
import { testSqlite } from "../../helpers/lookup-tiers.js";

describe("SqliteTier", () => {
  let dir: string;
  let clock: ManualClock;
  const open: SqliteTier[] = [];

  function make(over: Partial<SqliteTierOptions> = {}): SqliteTier {
    const t = testSqlite(join(dir, "cache.sqlite"), clock, { logger: captureLog().logger, ...over });
    open.push(t);
    return t;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dnsgeo-sqlite-"));
    clock = new ManualClock();
  });
  afterEach(() => {
    for (const t of open.splice(0)) t.close();
    try {
      chmodSync(dir, 0o755);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("flushes queued writes on close so a reopened file has them", () => {
    // Prepare
    const a = make();
    a.set([positive("8.8.8.8", clock), negative("203.0.113.5", clock)]);
    // Act
    a.close();
    const b = make();
    // Assess
    const got = b.get(["8.8.8.8", "203.0.113.5"]);
    expect(got.size).toBe(2);
    expect(got.get("203.0.113.5")?.neg).toBe(true);
    expect(b.stats()).toMatchObject({ rows: 2, schemaVersion: SQLITE_SCHEMA_VERSION, pendingWrites: 0, degraded: false });
  });

  it("a flush that finds another connection writing returns at once and keeps its rows for the next flush", () => {
    // Prepare: a second connection (another process) holds the write lock
    const tier = make();
    const other = new Database(join(dir, "cache.sqlite"));
    other.exec("BEGIN IMMEDIATE");
    tier.set([positive("8.8.8.8", clock)]);
    // Act
    const t0 = performance.now();
    const wrote = tier.flush();
    const took = performance.now() - t0;
    other.exec("ROLLBACK");
    other.close();
    // Assess: no second-long busy wait blocking the event loop; the row is written once the lock is free
    expect(wrote).toBe(0);
    expect(took).toBeLessThan(200);
    expect(tier.flush()).toBe(1);
  });

  it("writes at most writeBatch rows per flush, oldest first", () => {
    const t = make({ writeBatch: 10 });
    t.set(ipv4s(25).map((ip) => positive(ip, clock)));
    expect(t.flush()).toBe(10);
    expect(t.stats()).toMatchObject({ rows: 10, pendingWrites: 15 });
    t.flushAll();
    expect(t.stats()).toMatchObject({ rows: 25, pendingWrites: 0 });
  });

  it("drops the oldest pending writes past queueMax and counts them", async () => {
    const metrics = createMetrics();
    const t = make({ queueMax: 5, writeBatch: 1000, metrics });
    const ips = ipv4s(8);
    t.set(ips.map((ip) => positive(ip, clock)));
    t.flushAll();
    const got = t.get(ips);
    expect([...got.keys()].sort()).toEqual(ips.slice(3).sort());
    expect(await metricValue(metrics, "dnsgeo_queue_dropped_total", { queue: "sqlite_write" })).toBe(3);
  });

  it("prunes past maxRows: expired rows first, then the least recently used", () => {
    // Prepare: 10 rows; rows 0-2 expire; rows 3-5 are read later (recently used).
    const t = make({ maxRows: 10, writeBatch: 1000, touchEveryS: 30 });
    const ips = ipv4s(14);
    const first = ips.slice(0, 10);
    t.set(first.map((ip, i) => positive(ip, clock, i < 3 ? 30 : 10_000)));
    t.flushAll();
    clock.advanceS(60);
    expect(t.get(first.slice(3, 6)).size).toBe(3);
    t.flush();
    clock.advanceS(60);
    // Act: 4 more rows → 14 > 10, pruned to 9.
    t.set(ips.slice(10).map((ip) => positive(ip, clock, 10_000)));
    t.flushAll();
    // Assess
    expect(t.stats().rows).toBe(9);
    const left = t.get(ips, { allowStale: true });
    for (const ip of first.slice(0, 3)) expect(left.has(ip)).toBe(false);
    for (const ip of first.slice(3, 6)) expect(left.has(ip)).toBe(true);
    for (const ip of ips.slice(10)) expect(left.has(ip)).toBe(true);
    expect(first.slice(6, 10).filter((ip) => left.has(ip)).length).toBe(2);
  });

  it("re-stamps a row as recently used at most once per touchEveryS", () => {
    // Prepare
    const t = make({ touchEveryS: 300 });
    t.set([positive("8.8.8.8", clock, 10_000)]);
    t.flushAll();
    const lastUsed = (): number => {
      const db = new Database(join(dir, "cache.sqlite"), { readonly: true });
      try {
        return (db.prepare("SELECT last_used FROM geo_v1 WHERE ip = ?").get("8.8.8.8") as { last_used: number }).last_used;
      } finally {
        db.close();
      }
    };
    const written = lastUsed();
    // Act + Assess: a hit soon after changes nothing on disk
    clock.advanceS(60);
    expect(t.get(["8.8.8.8"]).size).toBe(1);
    t.flushAll();
    expect(lastUsed()).toBe(written);
    // a hit after the interval stamps it
    clock.advanceS(300);
    expect(t.get(["8.8.8.8"]).size).toBe(1);
    t.flushAll();
    expect(lastUsed()).toBe(written + 360);
  });

  it("reports stats and purges expired rows or everything", () => {
    const t = make();
    t.set([positive("8.8.8.8", clock, 10), positive("1.1.1.1", clock, 1000), negative("203.0.113.1", clock, 10)]);
    t.flushAll();
    clock.advanceS(20);
    expect(t.stats()).toMatchObject({ rows: 3, expiredRows: 2 });
    expect(t.stats().fileBytes).toBeGreaterThan(0);
    expect(t.purge({ expiredOnly: true })).toBe(2);
    expect(t.stats()).toMatchObject({ rows: 1, expiredRows: 0 });
    expect(t.purge()).toBe(1);
    expect(t.stats().rows).toBe(0);
  });

  it("moves a corrupt file aside, warns, and rebuilds a working cache", () => {
    // Prepare
    const path = join(dir, "cache.sqlite");
    writeFileSync(path, Buffer.alloc(8192, 0x5a));
    const { logger, records: lines } = captureLog();
    // Act
    const t = make({ logger });
    t.set([positive("8.8.8.8", clock)]);
    t.flushAll();
    // Assess
    expect(t.isDegraded).toBe(false);
    expect(t.get(["8.8.8.8"]).size).toBe(1);
    expect(readdirSync(dir).some((f) => f.startsWith("cache.sqlite.corrupt-"))).toBe(true);
    expect(lines.some((l) => l.level === 40 && String(l.msg).includes("corrupt"))).toBe(true);
  });

  it("moves aside a file whose pages are malformed", () => {
    const path = join(dir, "cache.sqlite");
    const a = make({ path });
    a.set(ipv4s(2000).map((ip) => positive(ip, clock)));
    a.close();
    const db = new Database(path);
    db.pragma("journal_mode = DELETE");
    db.close();
    // Keep the header, overwrite the schema page and beyond.
    const buf = readFileSync(path);
    buf.fill(0xff, 100, buf.length);
    writeFileSync(path, buf);
    const t = make({ path });
    t.set([positive("1.1.1.1", clock)]);
    t.flushAll();
    expect(t.isDegraded).toBe(false);
    expect(t.get(["1.1.1.1"]).size).toBe(1);
    expect(readdirSync(dir).some((f) => f.startsWith("cache.sqlite.corrupt-"))).toBe(true);
  });

  it("migrates an older schema through a registered step", () => {
    // Prepare: a version-0 file with its own table layout.
    const path = join(dir, "cache.sqlite");
    const old = new Database(path);
    old.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '0');");
    old.exec("CREATE TABLE geo_v0 (ip TEXT PRIMARY KEY, json TEXT, expires INTEGER)");
    const e = positive("8.8.8.8", clock);
    old.prepare("INSERT INTO geo_v0 VALUES (?, ?, ?)").run(e.ip, JSON.stringify(e.geo), e.expiresAt);
    old.close();
    // Act
    const t = make({
      path,
      migrations: {
        0: (db) => {
          db.exec(`CREATE TABLE geo_v1 (ip TEXT PRIMARY KEY, v INTEGER NOT NULL, geo TEXT, src TEXT NOT NULL,
            fetched_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, neg INTEGER NOT NULL DEFAULT 0,
            last_used INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`);
          db.exec(`INSERT INTO geo_v1 (ip, v, geo, src, fetched_at, expires_at)
            SELECT ip, 1, json, 'ip-api', json_extract(json, '$.fetchedAt'), expires FROM geo_v0`);
          db.exec("DROP TABLE geo_v0");
        },
      },
    });
    // Assess
    expect(t.get(["8.8.8.8"]).get("8.8.8.8")).toEqual(e);
    expect(t.stats().schemaVersion).toBe(SQLITE_SCHEMA_VERSION);
    t.close();
    const check = new Database(path, { readonly: true });
    const tables = check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
    check.close();
    expect(tables).toEqual(["geo_v1", "meta"]);
  });

  it("rebuilds an older schema that has no migration step", () => {
    const path = join(dir, "cache.sqlite");
    const old = new Database(path);
    old.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '0');");
    old.exec("CREATE TABLE geo_v0 (ip TEXT PRIMARY KEY, json TEXT); INSERT INTO geo_v0 VALUES ('8.8.8.8', '{}');");
    old.close();
    const { logger, records: lines } = captureLog();
    const t = make({ path, logger });
    expect(t.get(["8.8.8.8"]).size).toBe(0);
    t.set([positive("8.8.8.8", clock)]);
    t.flushAll();
    expect(t.get(["8.8.8.8"]).size).toBe(1);
    expect(lines.some((l) => String(l.msg).includes("no migration path"))).toBe(true);
    t.close();
    const check = new Database(path, { readonly: true });
    expect(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all()).toEqual(["geo_v1", "meta"]);
    expect(check.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get()).toBe(String(SQLITE_SCHEMA_VERSION));
    check.close();
  });

  it("degrades to a no-op with one warning when the disk is full", () => {
    // Prepare: a tiny page budget stands in for a full disk.
    const { logger, records: lines } = captureLog();
    const metrics = createMetrics();
    const t = make({ logger, metrics, maxPageCount: 16, writeBatch: 100_000 });
    t.set([positive("8.8.8.8", clock)]);
    t.flushAll();
    expect(t.get(["8.8.8.8"]).size).toBe(1);
    // Act
    t.set(ipv4s(5000).map((ip) => positive(ip, clock, 600, { city: "x".repeat(200) })));
    expect(() => t.flushAll()).not.toThrow();
    t.set([positive("1.1.1.1", clock)]);
    t.flushAll();
    // Assess
    expect(t.isDegraded).toBe(true);
    expect(t.get(["8.8.8.8", "1.1.1.1"]).size).toBe(0);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.code).toBe("SQLITE_FULL");
    expect(t.stats().degraded).toBe(true);
  });

  it("degrades to a no-op with a warning when the directory is read-only", (ctx) => {
    // Prepare
    const ro = join(dir, "ro");
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    let writable = true;
    try {
      writeFileSync(join(ro, "probe"), "x");
      rmSync(join(ro, "probe"));
    } catch {
      writable = false;
    }
    ctx.skip(writable, "chmod 0555 does not stop this user from writing (running as root?); the full-disk test covers degrading");
    const { logger, records: lines } = captureLog();
    // Act
    const t = make({ path: join(ro, "cache.sqlite"), logger });
    t.set([positive("8.8.8.8", clock)]);
    t.flushAll();
    // Assess
    expect(t.isDegraded).toBe(true);
    expect(t.get(["8.8.8.8"]).size).toBe(0);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    expect(existsSync(join(ro, "cache.sqlite"))).toBe(false);
  });
});

async function metricValue(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}
