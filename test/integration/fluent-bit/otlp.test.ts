/**
 * OTLP logs with the real Fluent Bit on both sides:
 *
 * 1. tail ─ opentelemetry output ─▶ dnsgeo POST /v1/logs ─▶ opentelemetry input ─ out_file,
 *    each its own process: every record exactly once, enriched in the record itself
 *    (Fluent Bit's output sends a parsed record as a kvlist body; the input makes that body
 *    the record again), counted by id; then again with the next hop stopped (SIGTERM) and
 *    started again mid-run: 0 lost. `DNSGEO_OTLP_SCALE=full` (npm run test:otlp) runs
 *    both with 100 000 records per run; `npm test` the first with 1 500. Figures go to
 *    `$TMPDIR/dnsgeo-otlp-<scale>.md`.
 * 2. examples/fluent-bit/otlp.yaml and dnsgeo-otlp.yaml as written (ports and paths substituted).
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { publicIp, route53Record } from "../../helpers/shipper.js";
import { FLUENT_BIT_SKIP, FluentBit, OutFileFollower, ROOT, countIds, freePort, startDnsgeo, startFluentBit, tally, waitUntil, type DnsgeoChild } from "../../helpers/fluent-bit.js";

type Obj = Record<string, unknown>;

const FULL = process.env.DNSGEO_OTLP_SCALE === "full";
const N = FULL ? 100_000 : 1500;
const SLICES = 20;
const APPEND_EVERY_MS = FULL ? 250 : 150;
const RUN_TIMEOUT_MS = FULL ? 900_000 : 90_000;
const STALL_MS = FULL ? 45_000 : 20_000;
/**
 * Fluent Bit's opentelemetry output sends a chunk (~2 MB, ~5 000 of these records) as
 * requests of `batch_size` records and reports the chunk by the last request's answer
 * only: a batch refused mid-chunk is dropped, a refused last batch resends the batches
 * before it. With the default 1 000 a 100 000-record run lost ~22 000 records in runs
 * of exactly 1 000 and duplicated ~32 000; one request per chunk (as the example) keeps
 * each answer about the whole chunk. `DNSGEO_OTLP_BATCH_SIZE=1000` shows the default's loss.
 */
const BATCH_SIZE = Number(process.env.DNSGEO_OTLP_BATCH_SIZE ?? 20_000);

function isEnriched(r: Obj): boolean {
  const status = (r.dnsgeo as Obj | undefined)?.status;
  const geo = (r.destination as Obj | undefined)?.geo as Obj | undefined;
  return (status === "enriched" || status === "partial") && typeof geo?.country_iso_code === "string";
}

function record(prefix: string, i: number): string {
  return route53Record(`${prefix}-${i}`, [publicIp(i * 7919), publicIp(i * 104729 + 13)]);
}

const skipReason = FLUENT_BIT_SKIP ? ` (skipped: ${FLUENT_BIT_SKIP})` : "";

interface RunResult {
  name: string;
  sent: number;
  arrived: number;
  lost: number;
  duplicates: number;
  notEnriched: number;
  arrivedAtFault?: number;
  seconds: number;
  sourceDropped: number;
}

const rows: RunResult[] = [];

function sourceConfig(dir: string, dnsgeoPort: number): string {
  // scheduler.cap: a chunk refused with 503 (dnsgeo overloaded, its next hop down) is retried
  // within 30 s, not after Fluent Bit's default cap of 2 000 s.
  return `service:
  flush: 1
  log_level: info
  scheduler.cap: 30
  storage.path: ${join(dir, "source-storage")}
parsers:
  - name: dns_json
    format: json
pipeline:
  inputs:
    - name: tail
      tag: dns.raw
      path: ${join(dir, "logs")}/*.ndjson
      parser: dns_json
      read_from_head: true
      refresh_interval: 1
      storage.type: filesystem
  outputs:
    - name: opentelemetry
      match: dns.raw
      host: 127.0.0.1
      port: ${dnsgeoPort}
      logs_uri: /v1/logs
      retry_limit: no_limits
      batch_size: ${BATCH_SIZE}
`;
}

function nextHopConfig(dir: string, port: number): string {
  return `service:
  flush: 1
  log_level: info
pipeline:
  inputs:
    - name: opentelemetry
      listen: 127.0.0.1
      port: ${port}
  outputs:
    - name: file
      match: "*"
      path: ${join(dir, "out")}
      format: plain
`;
}

async function runPipeline(name: string, fault?: { downMs: number }): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-fb-otlp-"));
  for (const d of ["logs", "out", "data"]) mkdirSync(join(dir, d));
  const dnsgeoPort = await freePort();
  const nextHopPort = await freePort();
  const counts = new Map<string, number>();
  let notEnriched = 0;
  let arrived = 0;
  let lastArrival = performance.now();
  const follower = new OutFileFollower(join(dir, "out"), (r) => {
    lastArrival = performance.now();
    const id = r.rid;
    if (typeof id !== "string") return;
    const n = (counts.get(id) ?? 0) + 1;
    counts.set(id, n);
    if (n === 1) arrived++;
    if (!isEnriched(r)) notEnriched++;
  });
  const procs: Array<FluentBit | DnsgeoChild> = [];
  const nextHop = new FluentBit({ config: nextHopConfig(dir, nextHopPort), format: "yaml", dir: join(dir, "next-hop"), readyPorts: [nextHopPort] });
  const source = new FluentBit({ config: sourceConfig(dir, dnsgeoPort), format: "yaml", dir: join(dir, "source") });
  try {
    await nextHop.start();
    procs.push(nextHop);
    const dnsgeoFile = join(dir, "dnsgeo.yaml");
    writeFileSync(
      dnsgeoFile,
      `http:\n  host: 127.0.0.1\n  port: ${dnsgeoPort}\ngrpc:\n  enabled: false\notlp:\n  next_hop: http://127.0.0.1:${nextHopPort}/v1/logs\n  timeout_ms: 10000\noutput:\n  format: ecs\nipapi:\n  enabled: false\n`,
    );
    const dnsgeo = await startDnsgeo(dnsgeoFile, { DNSGEO_DATA_DIR: join(dir, "data") });
    procs.push(dnsgeo);
    const log = join(dir, "logs", "route53.ndjson");
    writeFileSync(log, "");
    await source.start();
    procs.push(source);
    const began = performance.now();

    // Act
    let written = false;
    const writer = (async () => {
      const per = fault ? Math.ceil(N / SLICES) : N;
      for (let s = 0; s * per < N; s++) {
        let text = "";
        for (let i = s * per; i < Math.min(N, (s + 1) * per); i++) text += record("ot", i) + "\n";
        appendFileSync(log, text);
        await new Promise((r) => setTimeout(r, APPEND_EVERY_MS));
      }
      written = true;
    })();
    let arrivedAtFault: number | undefined;
    const until = Date.now() + RUN_TIMEOUT_MS;
    while (arrived < N && Date.now() < until && !(written && performance.now() - lastArrival > STALL_MS)) {
      await new Promise((r) => setTimeout(r, 200));
      follower.poll();
      if (fault && arrivedAtFault === undefined && arrived >= N / 4) {
        arrivedAtFault = arrived;
        await nextHop.stop("SIGTERM");
        await new Promise((r) => setTimeout(r, fault.downMs));
        await nextHop.start();
      }
    }
    await writer;
    const seconds = (lastArrival - began) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    follower.poll();
    let duplicates = 0;
    for (const n of counts.values()) duplicates += n - 1;
    return {
      name,
      sent: N,
      arrived,
      lost: N - arrived,
      duplicates,
      notEnriched,
      ...(arrivedAtFault !== undefined ? { arrivedAtFault } : {}),
      seconds: Math.round(seconds * 10) / 10,
      sourceDropped: (source.output.match(/will not be retried|cannot be retried|retries exhausted/gi) ?? []).length,
    };
  } finally {
    for (const p of procs.reverse()) await p.stop("SIGKILL");
    // dnsgeo's own log beside Fluent Bit's, for a run that went wrong.
    for (const p of procs) if (!(p instanceof FluentBit)) writeFileSync(join(dir, "dnsgeo.log"), p.log());
  }
}

describe.skipIf(FLUENT_BIT_SKIP !== "")(`tail → opentelemetry output → dnsgeo /v1/logs → opentelemetry input → out_file, ${N} records per run${skipReason}`, { timeout: RUN_TIMEOUT_MS + 60_000 }, () => {
  afterAll(() => {
    if (rows.length === 0) return;
    const table = [
      `Fluent Bit tail → opentelemetry output → dnsgeo POST /v1/logs → opentelemetry input → out_file, ${N} records per run`,
      "",
      "| run | sent | arrived | lost | duplicates | not enriched | arrived when the fault hit | seconds to the last arrival |",
      "|---|---|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.name} | ${r.sent} | ${r.arrived} | ${r.lost} | ${r.duplicates} | ${r.notEnriched} | ${r.arrivedAtFault ?? "–"} | ${r.seconds} |`),
      "",
    ].join("\n");
    writeFileSync(join(tmpdir(), `dnsgeo-otlp-${FULL ? "full" : "small"}.md`), table);
    console.log(table);
  });

  it("every record exactly once, enriched in the record itself", async () => {
    const r = await runPipeline("no fault");
    rows.push(r);
    expect({ lost: r.lost, duplicates: r.duplicates, notEnriched: r.notEnriched, sourceDropped: r.sourceDropped }).toEqual({ lost: 0, duplicates: 0, notEnriched: 0, sourceDropped: 0 });
  });

  // The scale script's (npm run test:otlp): npm test keeps to the plain run.
  it.runIf(FULL)("next hop stopped (SIGTERM) and started again mid-run: 0 lost", async () => {
    const r = await runPipeline("next hop stopped 3 s mid-run", { downMs: 3000 });
    rows.push(r);
    // A request the next hop accepted whose answer the restart cut may come twice (at-least-once).
    expect({ lost: r.lost, notEnriched: r.notEnriched, sourceDropped: r.sourceDropped }).toEqual({ lost: 0, notEnriched: 0, sourceDropped: 0 });
    expect(r.arrivedAtFault).toBeLessThan(N);
  });
});

describe.skipIf(FLUENT_BIT_SKIP !== "")(`examples/fluent-bit/otlp.yaml as written${skipReason}`, () => {
  const running: Array<FluentBit | DnsgeoChild> = [];
  afterEach(async () => {
    for (const p of running.splice(0).reverse()) await p.stop("SIGKILL");
  });

  it("tail → opentelemetry → dnsgeo → opentelemetry → stdout: every record once, enriched", async () => {
    // Prepare: only ports and paths change.
    const M = 600;
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-fb-otlp-example-"));
    for (const d of ["logs", "state", "data"]) mkdirSync(join(dir, d));
    const sub = (text: string, subs: Record<string, string>): string => {
      let out = text;
      for (const [from, to] of Object.entries(subs)) {
        expect(out.includes(from), `"${from}" occurs in the example`).toBe(true);
        out = out.split(from).join(to);
      }
      return out;
    };
    const httpPort = String(await freePort());
    const input = String(await freePort());
    const fbConfig = sub(readFileSync(join(ROOT, "examples/fluent-bit/otlp.yaml"), "utf8"), { "/var/log/dns": join(dir, "logs"), "/var/lib/fluent-bit": join(dir, "state"), "8053": httpPort, "4318": input });
    const dnsgeoFile = join(dir, "dnsgeo.yaml");
    writeFileSync(dnsgeoFile, sub(readFileSync(join(ROOT, "examples/fluent-bit/dnsgeo-otlp.yaml"), "utf8"), { "8053": httpPort, "4318": input }));
    const dnsgeo = await startDnsgeo(dnsgeoFile, { DNSGEO_DATA_DIR: join(dir, "data"), DNSGEO_IPAPI_ENABLED: "false" });
    running.push(dnsgeo);
    const log = join(dir, "logs", "route53.ndjson");
    let text = "";
    for (let i = 0; i < M / 2; i++) text += record("ex", i) + "\n";
    writeFileSync(log, text);
    const fb = await startFluentBit({ config: fbConfig, format: "yaml", dir: join(dir, "fb"), readyPorts: [Number(input)] });
    running.push(fb);

    // Act
    text = "";
    for (let i = M / 2; i < M; i++) text += record("ex", i) + "\n";
    appendFileSync(log, text);
    await waitUntil(() => countIds(fb.jsonLines()).size >= M, 60_000, `${M} records on Fluent Bit's stdout`);
    await new Promise((r) => setTimeout(r, 1500));

    // Assess
    const records = fb.jsonLines().filter((r) => typeof r.rid === "string");
    const t = tally(Array.from({ length: M }, (_, i) => `ex-${i}`), countIds(records));
    expect({ arrived: t.arrived, missing: t.missing.length, duplicated: t.duplicated.length, unknown: t.unknown }).toEqual({ arrived: M, missing: 0, duplicated: 0, unknown: 0 });
    for (const r of records) expect(isEnriched(r), r.rid as string).toBe(true);
    expect(fb.output).not.toMatch(/\[error\]/);
  }, 120_000);
});
