/**
 * Scenario 1: the pure pipeline with an in-memory lookup (all hits), against
 * plain JSON.parse + JSON.stringify of the same records in the same run. Both
 * go from bytes to bytes: the baseline decodes the body, parses and stringifies
 * each line, and encodes the result, as the pipeline has to.
 */
import { createApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { compareRates, roundSpread } from "./measure.js";
import { cacheEntries, route53Ndjson } from "./data.js";

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
  await app.close();
  const b = base?.perS ?? 0;
  const p = pipe?.perS ?? 0;
  return [{ scenario: "pipeline, in-memory lookup (all hits), batches of 100", recordsPerS: p, baseline: "JSON.parse+stringify", baselinePerS: b, ratio: p / b, spread: roundSpread(pipe?.rounds ?? [], base?.rounds ?? []), goal: 0.6 }];
}
