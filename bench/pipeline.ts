/**
 * Scenario 1: the pure pipeline with an in-memory lookup (all hits), against
 * plain JSON.parse + JSON.stringify of the same records in the same run. Both
 * go from bytes to bytes: the baseline decodes the body, parses and stringifies
 * each line, and encodes the result, as the pipeline has to.
 */
import { createApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { compareRates, roundSpread } from "./measure.js";
import { cacheEntries, route53Ndjson, route53Record } from "./data.js";

export interface ScenarioResult {
  scenario: string;
  recordsPerS: number;
  baseline: string;
  baselinePerS: number;
  ratio: number;
  /** Lowest and highest per-round ratio (see `roundSpread`), when the scenario has rounds. */
  spread?: [number, number];
  goal?: number;
}

/** Batches of `batch` records as NDJSON buffers. */
export function batches(total: number, batch: number, distinctIps: number): Buffer[] {
  const lines = route53Ndjson(total, distinctIps).trimEnd().split("\n");
  const out: Buffer[] = [];
  for (let i = 0; i < lines.length; i += batch) out.push(Buffer.from(lines.slice(i, i + batch).join("\n") + "\n"));
  return out;
}

export async function benchPipeline(): Promise<ScenarioResult[]> {
  const distinct = 2000;
  const bodies = batches(20_000, 100, distinct);
  const cfg = loadConfig({ overrides: { ipapi: { enabled: false }, mmdb: { enabled: false }, cache: { sqlite: { enabled: false } } } });
  const app = await createApp(cfg);
  await app.cache.set(cacheEntries(distinct));

  let i = 0;
  const [base, pipe] = await compareRates([
    {
      name: "json",
      fn: () => {
        const body = bodies[i++ % bodies.length] as Buffer;
        const lines = body.toString("utf8").split("\n");
        let out = "";
        let n = 0;
        for (const l of lines) {
          if (l === "") continue;
          out += JSON.stringify(JSON.parse(l)) + "\n";
          n++;
        }
        // Bytes in, bytes out, like the pipeline (and any server writing a body).
        if (Buffer.from(out, "utf8").length === 0) throw new Error("unreachable");
        return n;
      },
    },
    {
      name: "pipeline",
      fn: async () => {
        const body = bodies[i++ % bodies.length] as Buffer;
        const res = await app.enricher.enrichBody(body, { contentType: "application/x-ndjson" });
        if (res.counts.enriched !== 100) throw new Error(`expected 100 enriched, got ${JSON.stringify(res.counts)}`);
        return 100;
      },
    },
  ]);
  const b = base?.perS ?? 0;
  const p = pipe?.perS ?? 0;
  const rows: ScenarioResult[] = [{ scenario: "pipeline, in-memory lookup (all hits), batches of 100", recordsPerS: p, baseline: "JSON.parse+stringify", baselinePerS: b, ratio: p / b, spread: roundSpread(pipe?.rounds ?? [], base?.rounds ?? []), goal: 0.6 }];
  // Lossless output: corpora where every record holds an integer beyond 2^53, against
  // the same JSON.parse + JSON.stringify baseline (which itself loses those digits).
  const bigRoute53 = bigIntBatches(20_000, 100, distinct, "route53");
  const bigEcs = bigIntBatches(20_000, 100, distinct, "ecs");
  const plainEcs = bigIntBatches(20_000, 100, distinct, "ecs", false);
  for (const [label, corpus] of [["every record with a big integer: Route 53 records", bigRoute53], ["every record with a big integer: ECS records (dns object: the merge path)", bigEcs], ["ECS records with a dns object, no big integer (the object path)", plainEcs]] as const) {
    let j = 0;
    const [bb, bp] = await compareRates([
      { name: "json", fn: () => jsonRoundTrip(corpus[j++ % corpus.length] as Buffer) },
      {
        name: "pipeline",
        fn: async () => {
          const body = corpus[j++ % corpus.length] as Buffer;
          const res = await app.enricher.enrichBody(body, { contentType: "application/x-ndjson" });
          if (res.counts.enriched !== 100) throw new Error(`expected 100 enriched, got ${JSON.stringify(res.counts)}`);
          return 100;
        },
      },
    ]);
    const rb = bb?.perS ?? 0;
    const rp = bp?.perS ?? 0;
    rows.push({ scenario: `pipeline, all hits, ${label}`, recordsPerS: rp, baseline: "JSON.parse+stringify", baselinePerS: rb, ratio: rp / rb, spread: roundSpread(bp?.rounds ?? [], bb?.rounds ?? []) });
  }
  await app.close();
  return rows;
}

/** The baseline's work on one NDJSON body: parse and stringify each line, bytes to bytes. */
function jsonRoundTrip(body: Buffer): number {
  let out = "";
  let n = 0;
  for (const l of body.toString("utf8").split("\n")) {
    if (l === "") continue;
    out += JSON.stringify(JSON.parse(l)) + "\n";
    n++;
  }
  if (Buffer.from(out, "utf8").length === 0) throw new Error("unreachable");
  return n;
}

/**
 * Batches whose every record carries `9223372036854775808` (2^63, beyond 2^53): Route 53
 * records with it at the top level, or ECS DNS events with it under `dns` (an Elastic
 * Endpoint event's `dns.Ext.options`), which dnsgeo merges `dns.resolved_ip` into.
 * `big: false`: the same records with a small integer there (nothing at risk).
 */
export function bigIntBatches(total: number, batch: number, distinctIps: number, kind: "route53" | "ecs", big = true): Buffer[] {
  const n = big ? "9223372036854775808" : "4096";
  const out: Buffer[] = [];
  let lines: string[] = [];
  for (let i = 0; i < total; i++) {
    const r = route53Record(i, distinctIps);
    let text: string;
    if (kind === "route53") text = JSON.stringify({ ...r, event_seq: 0 }).replace('"event_seq":0', `"event_seq":${n}`);
    else {
      const answers = (r.answers as Array<{ Rdata: string; Type: string }>).map((a) => ({ data: a.Rdata, type: a.Type, class: "IN", name: r.query_name, ttl: 60 }));
      const ecs = {
        "@timestamp": r.query_timestamp,
        event: { category: ["network"], type: ["protocol"], kind: "event", dataset: "endpoint.events.network" },
        source: { ip: r.srcaddr, port: 53411 },
        dns: { question: { name: r.query_name, type: "A", class: "IN" }, response_code: "NOERROR", answers, Ext: { options: 0, status: 0 } },
        process: { pid: 4242, name: "chrome.exe" },
      };
      text = JSON.stringify(ecs).replace('"options":0', `"options":${n}`);
    }
    lines.push(text);
    if (lines.length === batch) {
      out.push(Buffer.from(lines.join("\n") + "\n"));
      lines = [];
    }
  }
  if (lines.length > 0) out.push(Buffer.from(lines.join("\n") + "\n"));
  return out;
}
