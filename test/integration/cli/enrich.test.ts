/** The real `dnsgeo` CLI on files and stdin, offline (no provider, no AWS). */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { route53Ndjson } from "../../../bench/data.js";
import { runCli } from "../../helpers/cli.js";

let dir: string;
let offline: Record<string, string>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dnsgeo-cli-"));
  offline = { DNSGEO_IPAPI_ENABLED: "false", DNSGEO_DATA_DIR: dir };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dnsgeo enrich", () => {
  it("enriches a 20 000-record NDJSON file with the MMDB provider", async () => {
    // Prepare
    const file = join(dir, "20k.ndjson");
    writeFileSync(file, route53Ndjson(20_000, 5000));
    // Act
    const run = await runCli(["enrich", file], { env: offline, timeoutMs: 300_000 });
    // Assess
    expect(run.stderr).toMatch(/20000 records/);
    expect(run.code).toBe(0);
    const lines = run.stdout.toString("utf8").split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.length).toBe(20_000);
    const statuses = new Map<string, number>();
    for (const l of [lines[0], lines[9_999], lines[19_999]]) {
      const rec = JSON.parse(l as string) as { dnsgeo: { status: string; answers: Array<{ source?: string }> }; query_name: string };
      statuses.set(rec.dnsgeo.status, (statuses.get(rec.dnsgeo.status) ?? 0) + 1);
      expect(rec.query_name).toMatch(/example-cdn\.net\.$/);
    }
    // Offline data answers these synthetic public IPs (some may be unknown to DB-IP: still "enriched", final).
    expect([...statuses.keys()]).toEqual(["enriched"]);
  }, 300_000);

  it("keeps the framing: a gzip'd JSON array in, a JSON array out", async () => {
    const file = join(dir, "arr.json.gz");
    const recs = route53Ndjson(3, 3).trim().split("\n").map((l) => JSON.parse(l) as unknown);
    writeFileSync(file, gzipSync(JSON.stringify(recs)));
    const run = await runCli(["enrich", "--format", "quicksight", file], { env: offline });
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout.toString("utf8")) as Array<Record<string, unknown>>;
    expect(out).toHaveLength(3);
    expect(out[0]).toHaveProperty("enrichment_status");
    expect(JSON.parse(out[0]?.record as string)).toEqual(recs[0]);
  });

  it("reads stdin and passes a non-JSON line through unchanged", async () => {
    const input = 'not json at all\n{"query":"example.org","answers":["93.184.215.14"],"id.orig_h":"10.0.0.2"}\n';
    const run = await runCli(["enrich"], { env: offline, stdin: input });
    expect(run.code).toBe(0);
    const lines = run.stdout.toString("utf8").trimEnd().split("\n");
    expect(lines[0]).toBe("not json at all");
    expect(JSON.parse(lines[1] as string)).toMatchObject({ query: "example.org", dnsgeo: { status: "enriched" } });
  });
});

describe("dnsgeo usage", () => {
  it("prints help on every verb with exit 0", async () => {
    const verbs = [["--help"], ["enrich", "--help"], ["lookup", "--help"], ["serve", "--help"], ["table", "--help"], ["cache", "--help"]];
    const runs = await Promise.all(verbs.map((args) => runCli(args, { env: offline })));
    runs.forEach((run, i) => {
      expect(run.code, (verbs[i] ?? []).join(" ")).toBe(0);
      expect(run.stdout.toString()).toMatch(/Usage: dnsgeo/);
    });
  });

  it("exits 2 with one line for a usage error", async () => {
    const run = await runCli(["enrich", "--format", "xml"], { env: offline });
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/xml/);
  });

  it("stops with exit 78 naming the key for a wrong config value", async () => {
    const run = await runCli(["lookup", "8.8.8.8"], { env: { ...offline, DNSGEO_LOOKUP_DEADLINE_MS: "soon" } });
    expect(run.code).toBe(78);
    expect(run.stderr).toMatch(/DNSGEO_LOOKUP_DEADLINE_MS/);
  });

  it("stops with exit 78 and one line for a value found wrong at start (no stack trace)", async () => {
    const run = await runCli(["lookup", "8.8.8.8"], { env: { ...offline, DNSGEO_RESOLVE_MODE: "missing", DNSGEO_RESOLVE_SERVERS: "notanip" } });
    expect(run.code).toBe(78);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/resolve\.servers/);
  });

  it("prints one line and exits 1 when the port is taken", async () => {
    const { createServer } = await import("node:net");
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      const run = await runCli(["serve"], { env: { ...offline, DNSGEO_HTTP_PORT: String(port), DNSGEO_GRPC_PORT: "0", DNSGEO_LOG_LEVEL: "error" } });
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^dnsgeo: .*EADDRINUSE/m);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    } finally {
      busy.close();
    }
  });

  it("looks IPs up offline and says why it skips others", async () => {
    const run = await runCli(["lookup", "8.8.8.8", "10.1.2.3", "not-an-ip"], { env: offline });
    expect(run.code).toBe(1);
    const [a, b, c] = run.stdout.toString().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a).toMatchObject({ ip: "8.8.8.8", status: "enriched", geo: { countryCode: "US", asn: 15169, source: "mmdb" } });
    expect(b).toMatchObject({ ip: "10.1.2.3", status: "skipped", reason: "private" });
    expect(c).toMatchObject({ status: "invalid" });
  });
});
