/**
 * The README and the reference in docs/ are documentation users act on: the tables of
 * config keys, metrics and error codes are checked against the code both ways (nothing
 * missing, nothing invented), and the README's set-up commands against CI.
 */
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { configLeaves, configSchema, envName } from "../../src/config.js";
import { ERROR_CODES, type ErrorSpec } from "../../src/errors.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { HTTP_ROUTES } from "../../src/transport/http-server.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");
/** The README and every page of docs/, one text: a section may live in any of them. */
const DOCS = [README, ...readdirSync(join(ROOT, "docs"))
  .filter((f) => f.endsWith(".md"))
  .sort()
  .map((f) => readFileSync(join(ROOT, "docs", f), "utf8"))].join("\n");

/** The text of a `## title` section (README or docs/), up to the next `## ` or `# `. */
function section(title: string): string {
  const start = DOCS.indexOf(`\n## ${title}\n`);
  expect(start, `the README or a page of docs/ has a "## ${title}" section`).toBeGreaterThan(-1);
  const ends = [DOCS.indexOf("\n## ", start + 4), DOCS.indexOf("\n# ", start + 4)].filter((i) => i >= 0);
  return DOCS.slice(start, ends.length > 0 ? Math.min(...ends) : undefined);
}

/** Rows of the first markdown table in `text`, cells trimmed, header and rule dropped. */
function tableRows(text: string): string[][] {
  const lines = text.split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (let i = first + 2; i < lines.length; i++) {
    const l = lines[i] as string;
    if (!l.startsWith("|")) break;
    // Split on pipes that are not escaped (`\|` inside a cell).
    rows.push(
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

const code = (cell: string): string => {
  const m = /^`([^`]+)`$/.exec(cell);
  if (!m) throw new Error(`expected one code span, got ${cell}`);
  return m[1] as string;
};

function get(o: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((a, k) => (a && typeof a === "object" ? (a as Record<string, unknown>)[k] : undefined), o);
}

/** How a default value is written in the config table. */
function defaultCell(v: unknown): string {
  if (v === undefined) return "—";
  if (Array.isArray(v)) return "`" + JSON.stringify(v) + "`";
  return "`" + String(v) + "`";
}

/** Fenced blocks of one language, in order. */
function fenced(lang: string, text = README): string[] {
  return [...text.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)\\n```", "g"))].map((m) => m[1] as string);
}

describe("README: the two set-up commands", () => {
  it("starts with `npm ci && npm start`, then `npm ci && npm test`", () => {
    // Prepare
    const twoCommands = section("Two commands");
    // Act
    const blocks = fenced("sh", twoCommands);
    // Assess
    expect(blocks.slice(0, 2)).toEqual(["npm ci && npm start", "npm ci && npm test"]);
    expect(fenced("sh").slice(0, 2)).toEqual(["npm ci && npm start", "npm ci && npm test"]);
  });

  it("CI runs exactly the second command, and `npm start` runs the sidecar", () => {
    // Prepare
    const ci = readFileSync(join(ROOT, ".ci/run"), "utf8");
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    // Assess
    expect(ci.split("\n").map((l) => l.trim())).toContain("npm ci && npm test");
    expect(pkg.scripts.start).toBe("node dist/src/main.js serve");
    expect(pkg.scripts.pretest).toContain("build");
  });
});

describe("README: configuration reference", () => {
  const rows = tableRows(section("Configuration reference"));
  const defaults = configSchema.parse({});
  const leaves = configLeaves();

  it("documents every config key of the schema, and only those", () => {
    // Act
    const keys = rows.map((r) => code(r[0] as string));
    // Assess
    expect([...keys].sort()).toEqual([...leaves.keys()].sort());
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("gives each key its real environment variable and default", () => {
    // Assess
    for (const r of rows) {
      const key = code(r[0] as string);
      expect(code(r[1] as string), key).toBe(envName(key));
      expect(r[2], key).toBe(defaultCell(get(defaults, key)));
      expect((r[3] ?? "").length, `${key} has a meaning`).toBeGreaterThan(5);
    }
  });

  it("names no DNSGEO_ variable that neither the config loader, the bench nor the npm scripts know", () => {
    // Prepare: the bench's own switches (read in bench/) and the npm scripts' scale switches count as known.
    const benchText = readdirSync(join(ROOT, "bench"))
      .filter((f) => f.endsWith(".ts"))
      .map((f) => readFileSync(join(ROOT, "bench", f), "utf8"))
      .join("\n");
    const benchVars = [...benchText.matchAll(/process\.env\.(DNSGEO_[A-Z0-9_]+)/g)].map((m) => m[1] as string);
    const scriptVars = [...readFileSync(join(ROOT, "package.json"), "utf8").matchAll(/\b(DNSGEO_[A-Z0-9_]+)=/g)].map((m) => m[1] as string);
    const known = new Set<string>(["DNSGEO_CONFIG", ...[...leaves.keys()].map(envName), ...Object.keys(ERROR_CODES), ...benchVars, ...scriptVars]);
    // Act
    const named = new Set([...DOCS.matchAll(/\bDNSGEO_[A-Z0-9_]+/g)].map((m) => m[0]));
    // Assess
    for (const n of named) expect(known.has(n), n).toBe(true);
  });
});

describe("README: metrics", () => {
  const registry = createMetrics().registry;
  const rows = tableRows(section("Metrics"));

  it("documents every metric the registry exports, with its type and labels", () => {
    // Prepare
    const metrics = registry.getMetricsAsArray() as unknown as Array<{ name: string; type: string; labelNames: string[] }>;
    // Act
    const documented = new Map(rows.map((r) => [code(r[0] as string), r]));
    // Assess
    expect([...documented.keys()].sort()).toEqual(metrics.map((m) => m.name).sort());
    for (const m of metrics) {
      const r = documented.get(m.name) as string[];
      expect(r[1], m.name).toBe(m.type);
      expect(r[2], m.name).toBe(m.labelNames.map((l) => "`" + l + "`").join(", "));
    }
  });

  it("mentions no metric name that does not exist", () => {
    // Prepare
    const all = createMetrics({ defaultMetrics: true }).registry;
    // Act: names in code spans; `dnsgeo_process_*` style prefixes are allowed when some metric has them.
    const mentioned = [...DOCS.matchAll(/`(dnsgeo_[a-z0-9_]+)(\*|\{[^`]*\})?`/g)];
    // Assess
    expect(mentioned.length).toBeGreaterThan(10);
    for (const m of mentioned) {
      const name = m[1] as string;
      // Not a metric: the output field that keeps a record's own `dnsgeo` (and its QuickSight columns).
      if (name.startsWith("dnsgeo_original")) continue;
      if (m[2] === "*") expect(all.getMetricsAsArray().some((x) => x.name.startsWith(name)), name).toBe(true);
      else expect(all.getSingleMetric(name), name).toBeDefined();
    }
  });
});

describe("README: error codes", () => {
  const rows = tableRows(section("Error codes"));

  it("documents every code with its HTTP status, gRPC status and retryability, and only those", () => {
    // Prepare
    const table: Record<string, ErrorSpec> = ERROR_CODES;
    // Act
    const codes = rows.map((r) => code(r[0] as string));
    // Assess
    expect([...codes].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const r of rows) {
      const c = code(r[0] as string);
      const spec = table[c] as ErrorSpec;
      expect(Number(r[1]), c).toBe(spec.http);
      expect(code(r[2] as string), c).toBe(GrpcStatus[spec.grpc]);
      expect(r[3], c).toBe(spec.retryable ? "yes" : "no");
    }
  });
});

describe("README: interface and output schema", () => {
  it("lists exactly the HTTP routes the server has", () => {
    // Prepare
    const rows = tableRows(section("HTTP and gRPC interface"));
    // Act
    const documented = rows.flatMap((r) => [...(r[0] as string).matchAll(/`(GET|POST) ([^`]+)`/g)].map((m) => `${m[1]} ${m[2]}`));
    // Assess
    expect(documented.sort()).toEqual([...HTTP_ROUTES].sort());
  });

  it("shows real ECS and QuickSight records: each example equals a golden output", () => {
    // Prepare
    const schema = section("Output schema");
    const blocks = fenced("json", schema).map((b) => JSON.parse(b) as unknown);
    const golden = (f: string) => (JSON.parse(readFileSync(join(ROOT, "test/fixtures/expected", f), "utf8")) as { items: unknown[] }).items;
    // Assess
    expect(blocks).toHaveLength(2);
    expect(golden("route53.ecs.json")).toContainEqual(blocks[0]);
    expect(golden("route53.quicksight.json")).toContainEqual(blocks[1]);
    expect(get(blocks[0], "destination.geo.location")).toEqual({ lat: expect.any(Number), lon: expect.any(Number) });
  });
});
