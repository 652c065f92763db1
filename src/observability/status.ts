/**
 * The status page (`GET /`, `/status`) and its numbers (`GET /status.json`): what
 * an on-call person looks at first. Every number is read from the metrics
 * registry that `/metrics` exports, so the page and Prometheus never disagree;
 * the map shows where the answers of recent records point, from the memory
 * tier's most recently used entries. The page is rendered on the server and
 * reloads itself: no JavaScript, no framework, no build step, no tiles.
 */
import type { Registry } from "prom-client";
import { buildInfo } from "../version.js";
import { MAP_HEIGHT, MAP_WIDTH, project, worldLandPath } from "./world-map.js";

/** Most recent cache entries the map samples. */
export const MAP_SAMPLE = 500;

/** One dot: the answers at one place (rounded to 0.1°), sized by how many. */
export interface MapDot {
  lat: number;
  lon: number;
  /** Answer IPs at this place in the sample. */
  count: number;
  /** "City, CC" or "CC" when known. */
  label: string;
}

export interface StatusSnapshot {
  version: string;
  node: string;
  commit?: string;
  /** Records since start by result (dnsgeo_records_total). */
  records: Record<string, number>;
  /** Records per second since the previous snapshot of this registry; absent on the first. */
  recordsPerSecond?: number;
  /** Per cache tier: lookups by outcome and the share answered (dnsgeo_lookups_total). */
  cache: Record<string, { lookups: number; hits: number; hitRate: number | null }>;
  provider: {
    /** Requests left in ip-api's window (dnsgeo_provider_budget_remaining), when the provider is on. */
    budgetRemaining?: number;
    /** IPs waiting for ip-api (dnsgeo_queue_depth{queue="backfill"}). */
    queue: number;
    /** Requests by answer code (dnsgeo_provider_requests_total). */
    requests: Record<string, number>;
  };
  forward: {
    /** Next-hop requests by class (dnsgeo_forward_requests_total). */
    requests: Record<string, number>;
    /** dnsgeo_forward_dead_letter_records_total */
    deadLetterRecords: number;
    /** dnsgeo_forward_dead_letter_bytes */
    deadLetterBytes: number;
  };
  /** Items dropped from full queues, by queue (dnsgeo_queue_dropped_total). */
  dropped: Record<string, number>;
  map: { sampled: number; dots: MapDot[] };
}

type Values = Array<{ labels: Record<string, string | number>; value: number }>;

const previous = new WeakMap<Registry, { t: number; total: number }>();

async function valuesOf(registry: Registry, name: string): Promise<Values> {
  const m = registry.getSingleMetric(name);
  if (!m) return [];
  return ((await m.get()) as { values: Values }).values;
}

function byLabel(values: Values, label: string, where: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) {
    if (!Object.entries(where).every(([k, want]) => String(v.labels[k]) === want)) continue;
    const key = String(v.labels[label] ?? "");
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

const sum = (values: Values): number => values.reduce((a, v) => a + v.value, 0);

/**
 * What the map needs of a cache entry (the lookup layer's `Entry` has this shape;
 * named here so observability does not import the layer that reports to it).
 */
export interface LocatedEntry {
  geo?: { lat?: number; lon?: number; city?: string; countryCode?: string };
}

/** Groups the entries' locations into dots. */
export function mapDots(entries: readonly LocatedEntry[]): MapDot[] {
  const dots = new Map<string, MapDot>();
  for (const e of entries) {
    const g = e.geo;
    if (!g || typeof g.lat !== "number" || typeof g.lon !== "number") continue;
    const lat = Math.round(g.lat * 10) / 10;
    const lon = Math.round(g.lon * 10) / 10;
    const key = `${lat},${lon}`;
    const d = dots.get(key);
    if (d) d.count++;
    else dots.set(key, { lat, lon, count: 1, label: [g.city, g.countryCode].filter((x) => x).join(", ") });
  }
  return [...dots.values()].sort((a, b) => b.count - a.count);
}

/** Reads the numbers from the registry and samples the map. */
export async function statusSnapshot(registry: Registry, recent: (n: number) => LocatedEntry[], now: number = Date.now()): Promise<StatusSnapshot> {
  const b = buildInfo();
  const records = byLabel(await valuesOf(registry, "dnsgeo_records_total"), "result");
  const total = Object.values(records).reduce((a, n) => a + n, 0);
  const lookups = await valuesOf(registry, "dnsgeo_lookups_total");
  const cache: StatusSnapshot["cache"] = {};
  for (const tier of ["memory", "sqlite", "redis", "dynamodb"]) {
    const outcomes = byLabel(lookups, "outcome", { tier });
    const n = Object.values(outcomes).reduce((a, x) => a + x, 0);
    if (n === 0 && Object.keys(outcomes).length === 0) continue;
    const hits = outcomes.hit ?? 0;
    cache[tier] = { lookups: n, hits, hitRate: n > 0 ? hits / n : null };
  }
  const budget = await valuesOf(registry, "dnsgeo_provider_budget_remaining");
  const queues = await valuesOf(registry, "dnsgeo_queue_depth");
  const entries = recent(MAP_SAMPLE);
  const snap: StatusSnapshot = Object.assign(
    { version: b.version, node: b.node },
    b.commit ? { commit: b.commit } : {},
    {
      records,
      cache,
      provider: Object.assign(
        { queue: byLabel(queues, "queue").backfill ?? 0, requests: byLabel(await valuesOf(registry, "dnsgeo_provider_requests_total"), "code") },
        budget.length > 0 ? { budgetRemaining: sum(budget) } : {},
      ),
      forward: {
        requests: byLabel(await valuesOf(registry, "dnsgeo_forward_requests_total"), "class"),
        deadLetterRecords: sum(await valuesOf(registry, "dnsgeo_forward_dead_letter_records_total")),
        deadLetterBytes: sum(await valuesOf(registry, "dnsgeo_forward_dead_letter_bytes")),
      },
      dropped: byLabel(await valuesOf(registry, "dnsgeo_queue_dropped_total"), "queue"),
      map: { sampled: entries.length, dots: mapDots(entries) },
    },
  );
  const prev = previous.get(registry);
  if (prev && now - prev.t >= 1000) snap.recordsPerSecond = (total - prev.total) / ((now - prev.t) / 1000);
  if (!prev || now - prev.t >= 1000) previous.set(registry, { t: now, total });
  return snap;
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (n: number | undefined): string => (n === undefined ? "—" : Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(1));
const pct = (x: number | null): string => (x === null ? "—" : `${(x * 100).toFixed(1)}%`);

function table(title: string, rows: Array<[string, string]>, id: string): string {
  const body = rows.length === 0 ? `<tr><td colspan="2" class="none">none yet</td></tr>` : rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td data-key="${esc(k)}">${esc(v)}</td></tr>`).join("");
  return `<section id="${id}"><h2>${esc(title)}</h2><table>${body}</table></section>`;
}

/** The page: numbers, then the map. `refreshS` is the reload interval. */
export function statusHtml(s: StatusSnapshot, refreshS = 5): string {
  const maxCount = Math.max(1, ...s.map.dots.map((d) => d.count));
  const dots = s.map.dots
    .map((d) => {
      const [x, y] = project(d.lon, d.lat);
      const r = 0.8 + 3.2 * Math.sqrt(d.count / maxCount);
      return `<circle class="dot" cx="${x.toFixed(2)}" cy="${y.toFixed(2)}" r="${r.toFixed(2)}" data-lat="${d.lat}" data-lon="${d.lon}" data-count="${d.count}"><title>${esc(d.label || `${d.lat}, ${d.lon}`)}: ${d.count}</title></circle>`;
    })
    .join("");
  const fwd = Object.entries(s.forward.requests);
  const total = Object.values(s.records).reduce((a, n) => a + n, 0);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${refreshS}">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>dnsgeo ${esc(s.version)} status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1rem 2rem;background:#fafafa;color:#222}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1rem;margin:.6rem 0 .3rem}
.grid{display:flex;flex-wrap:wrap;gap:1.5rem}section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}
table{border-collapse:collapse}th{text-align:left;font-weight:normal;color:#555;padding-right:1.5rem}td{text-align:right;font-variant-numeric:tabular-nums}
.none{color:#999}.big{font-size:1.6rem}svg{width:100%;max-width:1100px;background:#dfeefa;border:1px solid #ccd;border-radius:6px}
.land{fill:#f3f1ea;stroke:#bbb;stroke-width:.15}.dot{fill:#d9480f;fill-opacity:.7;stroke:#fff;stroke-width:.15}
</style></head><body>
<h1>dnsgeo ${esc(s.version)}</h1><div>Node.js ${esc(s.node)}${s.commit ? ` · commit ${esc(s.commit.slice(0, 12))}` : ""} · reloads every ${refreshS} s · numbers from <a href="metrics">/metrics</a></div>
<div class="grid">
<section id="rate"><h2>Records per second</h2><div class="big" data-key="records_per_second">${s.recordsPerSecond === undefined ? "—" : num(s.recordsPerSecond)}</div><div>${num(total)} since start</div></section>
${table("Records by status", Object.entries(s.records).map(([k, v]) => [k, num(v)]), "records")}
${table("Cache hit rate", Object.entries(s.cache).map(([k, v]) => [k, `${pct(v.hitRate)} of ${num(v.lookups)}`]), "cache")}
${table("ip-api", [["budget left", num(s.provider.budgetRemaining)], ["queue", num(s.provider.queue)], ...Object.entries(s.provider.requests).map(([k, v]): [string, string] => [`answers ${k}`, num(v)])], "provider")}
${table("Forward next hop", [...fwd.map(([k, v]): [string, string] => [k, num(v)]), ["dead letters", num(s.forward.deadLetterRecords)], ["dead-letter bytes", num(s.forward.deadLetterBytes)]], "forward")}
${table("Dropped from queues", Object.entries(s.dropped).map(([k, v]) => [k, num(v)]), "dropped")}
</div>
<h2>Where recent answers point (${s.map.dots.length} places, ${s.map.sampled} cached answers sampled)</h2>
<svg id="map" viewBox="0 0 ${MAP_WIDTH} ${MAP_HEIGHT}" role="img" aria-label="world map of recent answer locations"><path class="land" d="${worldLandPath()}"/>${dots}</svg>
<p>Land outline: Natural Earth 1:110m (public domain), via world-atlas.</p>
</body></html>
`;
}
