/**
 * examples/prometheus/alerts.yaml and examples/grafana/dnsgeo-dashboard.json are
 * what operators load as they are: every PromQL expression in them is parsed with
 * Prometheus's own grammar, and every metric and label it selects must be one the
 * code registers (the registry built by createMetrics, process metrics included).
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { parser } from "@prometheus-io/lezer-promql";
import { createMetrics } from "../../src/observability/metrics.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Series Prometheus adds itself for every scrape target, and the target labels it puts on every series. */
const PROMETHEUS_SERIES = new Map<string, string[]>([["up", []]]);
const TARGET_LABELS = ["job", "instance"];

/** Every series name the registry exposes (histograms as _bucket/_sum/_count) → its label names. */
function exportedSeries(): Map<string, string[]> {
  const out = new Map<string, string[]>(PROMETHEUS_SERIES);
  const metrics = createMetrics({ defaultMetrics: true }).registry.getMetricsAsArray() as unknown as Array<{ name: string; type: string; labelNames?: string[] }>;
  for (const m of metrics) {
    const labels = m.labelNames ?? [];
    if (m.type === "histogram") {
      out.set(`${m.name}_bucket`, [...labels, "le"]);
      out.set(`${m.name}_sum`, labels);
      out.set(`${m.name}_count`, labels);
    } else out.set(m.name, labels);
  }
  return out;
}

interface Selector {
  metric: string;
  labels: string[];
}

/**
 * Parses one expression; returns its vector selectors, or throws on a syntax
 * error. Grafana's interval variables are replaced by a duration first, as
 * Grafana does before it sends the query.
 */
function selectors(expr: string): Selector[] {
  const q = expr.replace(/\$__(rate_interval|interval|range)\b/g, "5m");
  const tree = parser.parse(q);
  const found: Selector[] = [];
  const errors: number[] = [];
  tree.iterate({
    enter(n) {
      if (n.type.isError) errors.push(n.from);
      if (n.name === "VectorSelector") {
        const node = n.node;
        const id = node.getChild("Identifier");
        const labels: string[] = [];
        const c = node.cursor();
        do {
          if (c.name === "LabelName") labels.push(q.slice(c.from, c.to));
        } while (c.next() && c.from < node.to);
        found.push({ metric: id ? q.slice(id.from, id.to) : "", labels });
      }
    },
  });
  if (errors.length > 0) throw new Error(`PromQL syntax error at ${errors.join(", ")} in: ${q}`);
  return found;
}

function checkExpr(where: string, expr: string, series: Map<string, string[]>, used: Set<string>): void {
  const sels = selectors(expr);
  expect(sels.length, `${where}: selects no metric`).toBeGreaterThan(0);
  for (const s of sels) {
    expect(s.metric, `${where}: a selector without a metric name`).not.toBe("");
    expect(series.has(s.metric), `${where}: ${s.metric} is not a metric dnsgeo exports`).toBe(true);
    const allowed = new Set([...(series.get(s.metric) ?? []), ...TARGET_LABELS]);
    for (const l of s.labels) expect(allowed.has(l), `${where}: ${s.metric} has no label ${l}`).toBe(true);
    used.add(s.metric);
  }
}

describe("PromQL checker", () => {
  it("finds metric names and label names, and rejects bad syntax", () => {
    // Act
    const sels = selectors('sum by (tier) (rate(a_total{tier!="x", job="j"}[$__rate_interval])) / on() group_left b > bool 0');
    // Assess
    expect(sels).toEqual([
      { metric: "a_total", labels: ["tier", "job"] },
      { metric: "b", labels: [] },
    ]);
    expect(() => selectors("sum(rate(a_total[5m])")).toThrow(/syntax error/);
    expect(() => checkExpr("t", "rate(dnsgeo_no_such_metric_total[5m])", exportedSeries(), new Set())).toThrow(/not a metric dnsgeo exports/);
    expect(() => checkExpr("t", 'rate(dnsgeo_records_total{colour="red"}[5m])', exportedSeries(), new Set())).toThrow(/has no label colour/);
  });
});

describe("examples/prometheus/alerts.yaml", () => {
  const doc = parseYaml(readFileSync(join(ROOT, "examples/prometheus/alerts.yaml"), "utf8")) as {
    groups: Array<{ name: string; rules: Array<{ alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>;
  };
  const rules = doc.groups.flatMap((g) => g.rules);

  it("is a Prometheus rule file: named groups of alerts with expr, severity, summary and description", () => {
    // Assess
    expect(doc.groups.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Dnsgeo[A-Za-z]+$/);
      expect(names.has(r.alert as string), `${r.alert} twice`).toBe(false);
      names.add(r.alert as string);
      expect(typeof r.expr).toBe("string");
      expect(["critical", "warning"]).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
    }
  });

  it("parses, and selects only metrics and labels dnsgeo exports, covering banned/budget, dead letters, next hop, tier errors and event-loop lag", () => {
    // Prepare
    const series = exportedSeries();
    const used = new Set<string>();
    // Act
    for (const r of rules) checkExpr(`alert ${r.alert}`, r.expr, series, used);
    // Assess
    for (const m of [
      "dnsgeo_provider_requests_total",
      "dnsgeo_provider_budget_remaining",
      "dnsgeo_forward_dead_letter_records_total",
      "dnsgeo_forward_requests_total",
      "dnsgeo_tier_errors_total",
      "dnsgeo_nodejs_eventloop_lag_p99_seconds",
    ]) {
      expect(used.has(m), `no alert on ${m}`).toBe(true);
    }
  });
});

describe("examples/grafana/dnsgeo-dashboard.json", () => {
  type Panel = { type: string; title: string; id: number; targets?: Array<{ expr: string; refId: string }>; gridPos: { h: number; w: number; x: number; y: number } };
  const dash = JSON.parse(readFileSync(join(ROOT, "examples/grafana/dnsgeo-dashboard.json"), "utf8")) as {
    uid: string;
    title: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: Array<{ name: string; definition?: string }> };
  };

  it("is an importable dashboard: uid, title, unique panel ids, panels inside the 24-column grid, a data-source variable", () => {
    // Assess
    expect(dash.uid).toBe("dnsgeo");
    expect(dash.title).toBe("dnsgeo");
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dash.panels) expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    expect(dash.templating.list.map((v) => v.name)).toEqual(["datasource", "instance"]);
  });

  it("every query parses and selects only metrics and labels dnsgeo exports; every dnsgeo metric but the process internals is on it", () => {
    // Prepare
    const series = exportedSeries();
    const used = new Set<string>();
    // Act
    for (const p of dash.panels) for (const t of p.targets ?? []) checkExpr(`panel "${p.title}" ${t.refId}`, t.expr, series, used);
    for (const v of dash.templating.list) {
      const m = /^label_values\((\w+), (\w+)\)$/.exec(v.definition ?? "");
      if (!v.definition) continue;
      expect(m, v.definition).not.toBeNull();
      expect(series.has(m?.[1] as string), v.definition).toBe(true);
      used.add(m?.[1] as string);
    }
    // Assess
    const own = [...series.keys()].filter((n) => n.startsWith("dnsgeo_") && !/^dnsgeo_(process|nodejs)_/.test(n) && !/_(sum|count)$/.test(n));
    const missing = own.filter((n) => !used.has(n) && !used.has(`${n}_bucket`) && !(n.endsWith("_bucket") && used.has(n.replace(/_bucket$/, "_count"))));
    expect(missing).toEqual(missingAllowed(missing));
  });
});

/**
 * Gauges of transport internals the dashboard leaves to ad-hoc queries; anything
 * else exported must have a panel.
 */
function missingAllowed(missing: string[]): string[] {
  const ok = new Set(["dnsgeo_connections_closed_total", "dnsgeo_grpc_unsent_answer_bytes", "dnsgeo_grpc_watch_streams"]);
  return missing.filter((n) => ok.has(n));
}
