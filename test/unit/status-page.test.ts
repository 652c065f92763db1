import { describe, expect, it } from "vitest";
import { landPath, project, worldLandPath } from "../../src/observability/world-map.js";
import { mapDots, statusHtml, statusSnapshot } from "../../src/observability/status.js";
import { createMetrics } from "../../src/observability/metrics.js";
import type { Entry } from "../../src/lookup/lookup.js";

const entry = (ip: string, lat?: number, lon?: number, city?: string): Entry => ({
  ip,
  src: "ip-api",
  fetchedAt: 0,
  expiresAt: 1,
  ...(lat === undefined ? { neg: true } : { geo: Object.assign({ ip, source: "ip-api", fetchedAt: 0, lat, lon, countryCode: "XX" }, city ? { city } : {}) }),
});

describe("world map", () => {
  it("decodes a TopoJSON polygon (quantized, delta-encoded, reversed arcs) into an equirectangular SVG path", () => {
    // Prepare: a square from (0,0) to (10,10) in degrees, as two arcs, the second used reversed.
    const topology = {
      transform: { scale: [1, 1] as [number, number], translate: [0, 0] as [number, number] },
      arcs: [
        [[0, 0], [10, 0], [0, 10]] as Array<[number, number]>,
        [[0, 0], [0, 10], [10, 0]] as Array<[number, number]>,
      ],
      objects: { land: { type: "GeometryCollection", geometries: [{ type: "Polygon", arcs: [[0, ~1]] }] } },
    };
    // Act
    const d = landPath(topology);
    // Assess: (0,0) → x 180, y 90; (10,0) → 190, 90; (10,10) → 190, 80; (0,10) → 180, 80.
    expect(d).toBe("M180 90L190 90L190 80L180 80L180 90Z");
    expect(project(-180, 90)).toEqual([0, 0]);
    expect(project(180, -90)).toEqual([360, 180]);
  });

  it("draws the bundled Natural Earth land outline inside the 360 × 180 box", () => {
    // Act
    const d = worldLandPath();
    const xs = [...d.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
    // Assess
    expect((d.match(/M/g) ?? []).length).toBeGreaterThan(100);
    for (const [x, y] of xs) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(360);
      expect(y).toBeGreaterThanOrEqual(0);
      expect(y).toBeLessThanOrEqual(180);
    }
  });
});

describe("status snapshot and page", () => {
  it("groups answers by place (0.1°), counts them, and ignores entries without coordinates", () => {
    // Act
    const dots = mapDots([entry("a", 48.86, 2.34, "Paris"), entry("b", 48.8612, 2.3488, "Paris"), entry("c", -33.9, 151.2), entry("d")]);
    // Assess
    expect(dots).toEqual([
      { lat: 48.9, lon: 2.3, count: 2, label: "Paris, XX" },
      { lat: -33.9, lon: 151.2, count: 1, label: "XX" },
    ]);
  });

  it("reads its numbers from the metrics registry, computes records per second between snapshots, and draws one circle per place", async () => {
    // Prepare
    const m = createMetrics();
    m.records.inc({ result: "enriched" }, 30);
    m.records.inc({ result: "skipped" }, 10);
    m.lookups.inc({ tier: "memory", outcome: "hit" }, 3);
    m.lookups.inc({ tier: "memory", outcome: "miss" }, 1);
    m.limiterRemaining.set({ provider: "ipapi" }, 12);
    m.queueDepth.set({ queue: "backfill" }, 7);
    const recent = (): Entry[] => [entry("a", 10, 20, "X"), entry("b", -10, -20)];
    // Act
    const first = await statusSnapshot(m.registry, recent, 1_000_000);
    m.records.inc({ result: "enriched" }, 20);
    const second = await statusSnapshot(m.registry, recent, 1_002_000);
    const html = statusHtml(second);
    // Assess
    expect(first.recordsPerSecond).toBeUndefined();
    expect(second.recordsPerSecond).toBe(10);
    expect(second.records).toEqual({ enriched: 50, skipped: 10 });
    expect(second.cache.memory).toEqual({ lookups: 4, hits: 3, hitRate: 0.75 });
    expect(second.provider).toMatchObject({ budgetRemaining: 12, queue: 7 });
    expect((html.match(/<circle class="dot"/g) ?? []).length).toBe(2);
    expect(html).toContain('cx="200.00" cy="80.00"');
    expect(html).toMatch(/<meta http-equiv="refresh" content="5">/);
    expect(html).not.toMatch(/<script|https?:\/\/(?!creativecommons)/);
  });
});
