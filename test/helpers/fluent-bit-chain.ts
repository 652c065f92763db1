/**
 * Fluent Bit pipelines around a real `dnsgeo serve`, for the integration tests:
 *
 * - `fluentBitYaml` writes a Fluent Bit YAML config from plain sections, with
 *   `tailSource` (a tail of Route 53 lines with the dns_json parser into one output),
 *   `outFile` (out_file, one JSON object per line), and `chainSource` / `chainNextHop`
 *   for the two Fluent Bits of a chain.
 * - `runChain` runs tail ─ source Fluent Bit ─▶ dnsgeo ─▶ next-hop Fluent Bit ─ out_file,
 *   each its own process, writing numbered records into the tailed file and counting by
 *   id what came out (optionally stopping and restarting the next hop mid-run);
 *   `reportChainRuns` writes the table of those counts.
 * - `runExample` runs an example Fluent Bit config and dnsgeo config as written
 *   (only ports and paths substituted) and collects what Fluent Bit's stdout got.
 */
import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { expect } from "vitest";
import { FluentBit, OutFileFollower, countIds, freePort, startDnsgeo, startFluentBit, tally, waitUntil, type DnsgeoChild, type FluentBitOptions } from "./fluent-bit.js";
import { publicIp, route53Record } from "./shipper.js";

type Obj = Record<string, unknown>;

/** True when dnsgeo enriched `r` (status enriched or partial) and it has a destination country. */
export function isEnriched(r: Obj): boolean {
  const status = (r.dnsgeo as Obj | undefined)?.status;
  const geo = (r.destination as Obj | undefined)?.geo as Obj | undefined;
  return (status === "enriched" || status === "partial") && typeof geo?.country_iso_code === "string";
}

/** A Route 53 line with id `<prefix>-<i>` and two public answers. */
export function routeRecord(prefix: string, i: number): string {
  return route53Record(`${prefix}-${i}`, [publicIp(i * 7919), publicIp(i * 104729 + 13)]);
}

/** `routeRecord(prefix, i)` for i from `from` up to `to`, one a line. */
function routeLines(prefix: string, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += routeRecord(prefix, i) + "\n";
  return s;
}

/** One map of a Fluent Bit YAML config: a service block, a parser, an input or an output. */
export type Section = Readonly<Record<string, string | number | boolean>>;

/** A YAML scalar: strings that would start YAML syntax (`*`, `&`, quotes, …) are quoted. */
function scalar(v: string | number | boolean): string {
  return typeof v === "string" && /^[*&!|>%@`"'{[]/.test(v) ? JSON.stringify(v) : String(v);
}

/** The map's keys and values, one a line at `indent`. */
function block(s: Section, indent: string): string {
  return Object.entries(s)
    .map(([k, v]) => `${indent}${k}: ${scalar(v)}\n`)
    .join("");
}

/** Each map a list item at `indent`: its first key behind `- `, the others under it. */
function list(items: readonly Section[], indent: string): string {
  return items.map((s) => block(s, `${indent}  `).replace(`${indent}  `, `${indent}- `)).join("");
}

/** A Fluent Bit YAML config with these sections, in the order given. */
export function fluentBitYaml(c: { service: Section; parsers?: readonly Section[]; inputs: readonly Section[]; outputs: readonly Section[] }): string {
  return `service:\n${block(c.service, "  ")}${c.parsers ? `parsers:\n${list(c.parsers, "  ")}` : ""}pipeline:\n  inputs:\n${list(c.inputs, "    ")}  outputs:\n${list(c.outputs, "    ")}`;
}

/**
 * A Fluent Bit config that tails `path` (Route 53 lines, parsed by a json parser named
 * dns_json, read from the head; `tail` adds to the input) into `output`.
 */
export function tailSource(o: { service: Section; path: string; tail?: Section; output: Section }): string {
  return fluentBitYaml({
    service: o.service,
    parsers: [{ name: "dns_json", format: "json" }],
    inputs: [{ name: "tail", path: o.path, parser: "dns_json", read_from_head: true, ...o.tail }],
    outputs: [o.output],
  });
}

/** out_file for every tag, one JSON object per line (`format: plain`), into the folder `path`. */
function outFile(path: string): Section {
  return { name: "file", match: "*", path, format: "plain" };
}

/**
 * A chain's source: tails `<dir>/logs/*.ndjson` as tag dns.raw with filesystem storage
 * (in `<dir>/source-storage`) into `output`; `more` adds to the service and the tail input.
 */
export function chainSource(dir: string, output: Section, more: { service?: Section; tail?: Section } = {}): string {
  return tailSource({
    service: { flush: 1, log_level: "info", "storage.path": join(dir, "source-storage"), ...more.service },
    path: `${join(dir, "logs")}/*.ndjson`,
    tail: { tag: "dns.raw", "storage.type": "filesystem", ...more.tail },
    output,
  });
}

/** A chain's next hop: `input` into out_file in `<dir>/out`; `service` adds to the service. */
export function chainNextHop(dir: string, input: Section, service: Section = {}): string {
  return fluentBitYaml({ service: { flush: 1, log_level: "info", ...service }, inputs: [input], outputs: [outFile(join(dir, "out"))] });
}

/** How big a chain run is and how long it may take. */
export interface ChainScale {
  /** Records written to the tailed file. */
  records: number;
  /** A run with a fault writes the file in this many appends, `appendEveryMs` apart, so records flow while the fault hits; one without writes it at once. */
  slices: number;
  appendEveryMs: number;
  /** Longest wait for everything to arrive. */
  runTimeoutMs: number;
  /** A run whose file is written and whose output has not grown for this long is over (what is missing is lost). */
  stallMs: number;
}

export interface ChainOptions {
  /** The run's name (the first column of the table). */
  name: string;
  /** Start of the name of the run's temp dir. */
  tmpPrefix: string;
  scale: ChainScale;
  /** Line `i` of the tailed file; its id is what is counted. */
  record(i: number): string;
  /** The source Fluent Bit's config: it tails `<dir>/logs/*.ndjson` and sends to dnsgeo on `dnsgeoPort`. */
  sourceConfig(dir: string, dnsgeoPort: number): string;
  /** The next hop's config: it listens on `port` and writes `<dir>/out` with out_file `format: plain`. */
  nextHopConfig(dir: string, port: number): string;
  /** dnsgeo's config: it listens on `dnsgeoPort` and sends to the next hop on `nextHopPort`. */
  dnsgeoConfig(dnsgeoPort: number, nextHopPort: number): string;
  /** Stop the next hop with `signal` once a quarter of the records arrived, and start it again after `downMs`. */
  fault?: { signal: "SIGTERM" | "SIGKILL"; downMs: number };
}

/** A chain run's counts: one row of the table. */
export interface ChainRow {
  name: string;
  sent: number;
  /** Distinct ids that arrived. */
  arrived: number;
  lost: number;
  /** Copies beyond the first of ids that arrived more than once. */
  duplicates: number;
  /** Records that arrived without dnsgeo's enrichment. */
  notEnriched: number;
  /** Lines of the output file that were not JSON (cut by a kill; a whole record behind the cut still counts). */
  brokenLines: number;
  /** Records arrived when the fault hit. */
  arrivedAtFault?: number;
  /** Seconds from the source's start to the last arrival (a run that lost records also waited `stallMs` for them). */
  seconds: number;
  /** What the source Fluent Bit logged about chunks it gave up. */
  sourceDropped: number;
}

/** A chain run's row and what more a test may read from the run. */
export interface ChainRun extends ChainRow {
  /** Each id that arrived, with how many times. */
  counts: ReadonlyMap<string, number>;
  /** The run's temp dir (dnsgeo's data dir is `<dir>/data`). */
  dir: string;
  /** dnsgeo's log (NDJSON) when the counting was done. */
  dnsgeoLog: string;
}

/**
 * Starts the next hop, dnsgeo and the source (each its own process, in that order),
 * writes `scale.records` records into the tailed file and follows the next hop's
 * out_file until every id arrived, the time ran out or arrivals stalled; then waits 3 s
 * for copies sent twice and counts. Every process is killed (SIGKILL) at the end, and
 * dnsgeo's log is left in `<dir>/dnsgeo.log`.
 */
export async function runChain(o: ChainOptions): Promise<ChainRun> {
  const { records: n, slices, appendEveryMs, runTimeoutMs, stallMs } = o.scale;
  const dir = mkdtempSync(join(tmpdir(), o.tmpPrefix));
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
    const c = (counts.get(id) ?? 0) + 1;
    counts.set(id, c);
    if (c === 1) arrived++;
    if (!isEnriched(r)) notEnriched++;
  });
  const procs: Array<FluentBit | DnsgeoChild> = [];
  const nextHop = new FluentBit({ config: o.nextHopConfig(dir, nextHopPort), format: "yaml", dir: join(dir, "next-hop"), readyPorts: [nextHopPort] });
  const source = new FluentBit({ config: o.sourceConfig(dir, dnsgeoPort), format: "yaml", dir: join(dir, "source") });
  let dnsgeo: DnsgeoChild | undefined;
  try {
    await nextHop.start();
    procs.push(nextHop);
    const dnsgeoFile = join(dir, "dnsgeo.yaml");
    writeFileSync(dnsgeoFile, o.dnsgeoConfig(dnsgeoPort, nextHopPort));
    dnsgeo = await startDnsgeo(dnsgeoFile, { DNSGEO_DATA_DIR: join(dir, "data") });
    procs.push(dnsgeo);
    const log = join(dir, "logs", "route53.ndjson");
    writeFileSync(log, "");
    await source.start();
    procs.push(source);
    const began = performance.now();

    let written = false;
    const writer = (async () => {
      // Without a fault the whole file is there at once: tail reads as fast as it can and fills its chunks.
      const per = o.fault ? Math.ceil(n / slices) : n;
      for (let s = 0; s * per < n; s++) {
        let text = "";
        for (let i = s * per; i < Math.min(n, (s + 1) * per); i++) text += o.record(i) + "\n";
        appendFileSync(log, text);
        await new Promise((r) => setTimeout(r, appendEveryMs));
      }
      written = true;
    })();
    let arrivedAtFault: number | undefined;
    const until = Date.now() + runTimeoutMs;
    while (arrived < n && Date.now() < until && !(written && performance.now() - lastArrival > stallMs)) {
      await new Promise((r) => setTimeout(r, 200));
      follower.poll();
      if (o.fault && arrivedAtFault === undefined && arrived >= n / 4) {
        arrivedAtFault = arrived;
        await nextHop.stop(o.fault.signal);
        await new Promise((r) => setTimeout(r, o.fault?.downMs));
        await nextHop.start();
      }
    }
    await writer;
    const seconds = (lastArrival - began) / 1000;
    // A copy sent twice would come within the next flushes.
    await new Promise((r) => setTimeout(r, 3000));
    follower.poll();
    let duplicates = 0;
    for (const c of counts.values()) duplicates += c - 1;
    return {
      name: o.name,
      sent: n,
      arrived,
      lost: n - arrived,
      duplicates,
      notEnriched,
      brokenLines: follower.broken,
      arrivedAtFault,
      seconds: Math.round(seconds * 10) / 10,
      sourceDropped: (source.output.match(/will not be retried|cannot be retried|retries exhausted/gi) ?? []).length,
      counts,
      dir,
      dnsgeoLog: dnsgeo.log(),
    };
  } finally {
    for (const p of procs.reverse()) await p.stop("SIGKILL");
    // dnsgeo's own log beside Fluent Bit's, for a run that went wrong.
    if (dnsgeo) writeFileSync(join(dir, "dnsgeo.log"), dnsgeo.log());
  }
}

/**
 * The rows as a Markdown table under `title`, printed and written to `file` in the temp
 * dir; nothing when there are no rows.
 */
export function reportChainRuns(title: string, file: string, rows: readonly ChainRow[]): void {
  if (rows.length === 0) return;
  const table = [
    title,
    "",
    "| run | sent | arrived | lost | duplicates | not enriched | cut lines | arrived when the fault hit | seconds to the last arrival |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => `| ${r.name} | ${r.sent} | ${r.arrived} | ${r.lost} | ${r.duplicates} | ${r.notEnriched} | ${r.brokenLines} | ${r.arrivedAtFault ?? "–"} | ${r.seconds} |`),
    "",
  ].join("\n");
  writeFileSync(join(tmpdir(), file), table);
  console.log(table);
}

/** Replaces every occurrence of each key by its value; each key must occur (an expectation). */
function substitute(text: string, subs: Record<string, string>): string {
  let out = text;
  for (const [from, to] of Object.entries(subs)) {
    expect(out.includes(from), `"${from}" occurs in the example`).toBe(true);
    out = out.split(from).join(to);
  }
  return out;
}

export interface ExampleOptions {
  /** Start of the name of the run's temp dir (it gets `logs`, `state`, `data` and `fb` in it). */
  tmpPrefix: string;
  /** Records sent, ids `ex-0` to `ex-<records - 1>`. */
  records: number;
  /**
   * The Fluent Bit side as the example holds it: `/var/log/dns` and `/var/lib/fluent-bit`
   * in `config` become the run's `logs` and `state` dirs, and each of `ports` a free port
   * (`readyPort` is the one to wait for). Its output must include `stdout` with `format: json_lines`.
   */
  fluentBit: Omit<FluentBitOptions, "dir" | "readyPorts"> & { ports: readonly string[]; readyPort: string };
  /** The dnsgeo config as the example holds it, with its `ports`, and the environment (DNSGEO_DATA_DIR is the run's `data`). */
  dnsgeo: { config: string; ports: readonly string[]; env?: Record<string, string> };
  /** Longest wait for every id on Fluent Bit's stdout. */
  timeoutMs: number;
  /** The processes started are added here, for the test to stop. */
  running: Array<FluentBit | DnsgeoChild>;
}

/**
 * Runs an example as written, only ports and paths changed (each must occur): starts
 * dnsgeo, writes half the records into `logs/route53.ndjson`, starts Fluent Bit (it reads
 * from the head), appends the other half and waits until every id is on Fluent Bit's
 * stdout and 1.5 s more (a duplicate would arrive within the next flush). Gives the
 * Fluent Bit, the records with an id and their tally against the ids sent.
 */
export async function runExample(o: ExampleOptions): Promise<{ fb: FluentBit; records: Obj[]; tally: ReturnType<typeof tally> }> {
  const dir = mkdtempSync(join(tmpdir(), o.tmpPrefix));
  for (const d of ["logs", "state", "data"]) mkdirSync(join(dir, d));
  const ports: Record<string, string> = {};
  for (const p of [...o.fluentBit.ports, ...o.dnsgeo.ports]) ports[p] ??= String(await freePort());
  const only = (names: readonly string[]): Record<string, string> => Object.fromEntries(names.map((p) => [p, ports[p] as string]));
  const { ports: fbPorts, readyPort, ...fluentBit } = o.fluentBit;
  const fbConfig = substitute(fluentBit.config, { "/var/log/dns": join(dir, "logs"), "/var/lib/fluent-bit": join(dir, "state"), ...only(fbPorts) });
  const dnsgeoFile = join(dir, "dnsgeo.yaml");
  writeFileSync(dnsgeoFile, substitute(o.dnsgeo.config, only(o.dnsgeo.ports)));
  o.running.push(await startDnsgeo(dnsgeoFile, { DNSGEO_DATA_DIR: join(dir, "data"), ...o.dnsgeo.env }));
  const log = join(dir, "logs", "route53.ndjson");
  writeFileSync(log, routeLines("ex", 0, o.records / 2));
  const fb = await startFluentBit({ ...fluentBit, config: fbConfig, dir: join(dir, "fb"), readyPorts: [Number(ports[readyPort])] });
  o.running.push(fb);
  appendFileSync(log, routeLines("ex", o.records / 2, o.records));
  await waitUntil(() => countIds(fb.jsonLines()).size >= o.records, o.timeoutMs, `${o.records} records on Fluent Bit's stdout`);
  await new Promise((r) => setTimeout(r, 1500));
  const records = fb.jsonLines().filter((r) => typeof r.rid === "string");
  return {
    fb,
    records,
    tally: tally(
      Array.from({ length: o.records }, (_, i) => `ex-${i}`),
      countIds(records),
    ),
  };
}
