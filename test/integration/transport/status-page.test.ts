/**
 * The status page of a running dnsgeo (the built CLI, ip-api pointed at the fake):
 * after lookups and a batch of records whose answers have known locations, the
 * page's map has one dot per location and its numbers equal /metrics. A real
 * headless Chromium (Debian's, driven by playwright-core; no browser is
 * downloaded) renders it and writes a screenshot to the test's temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accessSync, constants, existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { request } from "undici";
import { chromium } from "playwright-core";
import { startFakeIpApi, type FakeIpApi } from "../../helpers/fake-ipapi.js";
import { startServe, type ServeChild } from "../../helpers/cli.js";
import type { StatusSnapshot } from "../../../src/observability/status.js";

/** Chromium from CHROMIUM, else `chromium` on PATH (Debian's package). */
function findChromium(): string | undefined {
  const candidates = process.env.CHROMIUM ? [process.env.CHROMIUM] : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, "chromium"));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}
const CHROMIUM = findChromium();

/** Public IPs; the fake ip-api places each in one of its cities (some share one). */
const IPS = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "208.67.222.222", "185.60.216.35", "133.242.0.3", "200.147.67.142", "41.203.18.1", "151.101.1.69", "104.16.132.229", "13.107.21.200", "17.253.144.10"];

let fake: FakeIpApi;
let serve: ServeChild;
let base: string;
let dir: string;

beforeAll(async () => {
  fake = await startFakeIpApi();
  dir = mkdtempSync(join(tmpdir(), "dnsgeo-status-"));
  serve = await startServe({
    DNSGEO_HTTP_PORT: "0",
    DNSGEO_GRPC_ENABLED: "false",
    DNSGEO_CACHE_SQLITE_ENABLED: "false",
    DNSGEO_IPAPI_URL: fake.url,
    DNSGEO_DATA_DIR: dir,
  });
  base = `http://${serve.http}`;
  // The provider answers in the background; ask until every IP has its final answer.
  for (let i = 0; i < 50; i++) {
    const res = await request(`${base}/v1/lookup`, { method: "POST", body: JSON.stringify(IPS), headers: { "content-type": "application/json" } });
    const answers = (await res.body.json()) as Array<{ status: string; geo?: { source: string } }>;
    if (answers.every((a) => a.status === "enriched" && a.geo?.source === "ip-api")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // A batch of records whose answers are those IPs.
  const records = IPS.map((ip, i) => JSON.stringify({ version: "1.100000", query_name: `q${i}.example.`, query_type: "A", rcode: "NOERROR", answers: [{ Rdata: ip, Type: "A", Class: "IN" }], srcaddr: "10.0.0.9" })).join("\n");
  const res = await request(`${base}/v1/enrich`, { method: "POST", body: records + "\n", headers: { "content-type": "application/x-ndjson" } });
  expect(res.statusCode).toBe(200);
  await res.body.dump();
}, 60_000);

afterAll(async () => {
  await serve?.stop();
  await fake?.close();
});

/** The expected dots: the fake's answer locations, rounded to 0.1° and counted. */
function expectedDots(): Map<string, number> {
  const out = new Map<string, number>();
  for (const ip of IPS) {
    const a = fake.answerFor(ip) as { lat: number; lon: number };
    const key = `${Math.round(a.lat * 10) / 10},${Math.round(a.lon * 10) / 10}`;
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

/** `name{labels} value` lines of /metrics for one metric → label value of `label` → number. */
function metricValues(text: string, name: string, label: string, where: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm"))) {
    const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (!Object.entries(where).every(([k, v]) => labels[k] === v)) continue;
    const key = labels[label] as string;
    out[key] = (out[key] ?? 0) + Number(m[2]);
  }
  return out;
}

describe("status page", () => {
  it("/status.json: one dot per answer location with its count, and the numbers /metrics has", async () => {
    // Act
    const snap = (await (await request(`${base}/status.json`)).body.json()) as StatusSnapshot;
    const metrics = await (await request(`${base}/metrics`)).body.text();
    // Assess
    const dots = new Map(snap.map.dots.map((d) => [`${d.lat},${d.lon}`, d.count]));
    expect(dots).toEqual(expectedDots());
    expect(snap.records).toEqual(metricValues(metrics, "dnsgeo_records_total", "result"));
    expect(snap.records.enriched).toBe(IPS.length);
    const memory = metricValues(metrics, "dnsgeo_lookups_total", "outcome", { tier: "memory" });
    expect(snap.cache.memory?.lookups).toBe(Object.values(memory).reduce((a, n) => a + n, 0));
    expect(snap.cache.memory?.hits).toBe(memory.hit ?? 0);
    expect(snap.provider.budgetRemaining).toBe(metricValues(metrics, "dnsgeo_provider_budget_remaining", "provider").ipapi);
    expect(snap.provider.requests).toEqual(metricValues(metrics, "dnsgeo_provider_requests_total", "code"));
  });

  it("GET / and /status serve the page: land outline, one circle per location, no script and nothing fetched from elsewhere", async () => {
    for (const path of ["/", "/status"]) {
      // Act
      const res = await request(`${base}${path}`);
      const html = await res.body.text();
      // Assess
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(html).toMatch(/<path class="land" d="M/);
      expect((html.match(/<circle class="dot"/g) ?? []).length).toBe(expectedDots().size);
      expect(html).not.toMatch(/<script|src="http|href="http/);
    }
  });

  it.skipIf(!CHROMIUM)(`headless Chromium renders the map with a dot at each location, the numbers of /metrics, and a screenshot${CHROMIUM ? "" : " (skipped: no chromium on PATH or in CHROMIUM)"}`, async () => {
    // Prepare
    const browser = await chromium.launch({
      executablePath: CHROMIUM as string,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const foreign: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith(base)) foreign.push(r.url());
      });
      // Act
      await page.goto(`${base}/status`);
      const circles = await page.$$eval("circle.dot", (cs) =>
        cs.map((c) => {
          const b = c.getBoundingClientRect();
          return { lat: c.getAttribute("data-lat"), lon: c.getAttribute("data-lon"), count: Number(c.getAttribute("data-count")), w: b.width };
        }),
      );
      const land = await page.$eval("path.land", (p) => {
        // Runs in the browser; this file is type-checked without the DOM library.
        const b = (p as unknown as { getBBox(): { width: number; height: number } }).getBBox();
        return { width: b.width, height: b.height };
      });
      const enriched = await page.$eval('#records td[data-key="enriched"]', (td) => td.textContent);
      const shot = join(dir, "status.png");
      await page.screenshot({ path: shot, fullPage: true });
      const metrics = await (await request(`${base}/metrics`)).body.text();
      // Assess
      expect(new Map(circles.map((c) => [`${c.lat},${c.lon}`, c.count]))).toEqual(expectedDots());
      for (const c of circles) expect(c.w).toBeGreaterThan(0);
      expect(land.width).toBeGreaterThan(300);
      expect(land.height).toBeGreaterThan(120);
      expect(Number((enriched ?? "").replace(/,/g, ""))).toBe(metricValues(metrics, "dnsgeo_records_total", "result").enriched);
      expect(foreign).toEqual([]);
      expect(existsSync(shot) && statSync(shot).size).toBeGreaterThan(10_000);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
