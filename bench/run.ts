/**
 * `npm run bench`: every scenario, reported as records/s and as a ratio to its
 * baseline measured in the same run (absolute figures move between runs on
 * shared machines; ratios much less). Not a test: it prints, it never fails on speed.
 */
import { benchPipeline, type ScenarioResult } from "./pipeline.js";
import { benchTiers } from "./tiers.js";
import { benchServe } from "./serve.js";
import { benchFluent } from "./fluent.js";

const only = process.argv[2];
const suites: Array<[string, () => Promise<ScenarioResult[]>]> = [
  ["pipeline", benchPipeline],
  ["tiers", benchTiers],
  ["serve", benchServe],
  ["fluent", benchFluent],
];

const rows: ScenarioResult[] = [];
for (const [name, run] of suites) {
  if (only && only !== name) continue;
  process.stderr.write(`bench: ${name}…\n`);
  for (const r of await run()) rows.push(r);
}
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
process.stdout.write("| scenario | records/s | baseline | baseline/s | ratio | single rounds | goal |\n|---|---:|---|---:|---:|---:|---:|\n");
for (const r of rows) {
  const goal = r.goal === undefined ? "report" : `≥ ${r.goal.toFixed(2)}× ${r.ratio >= r.goal ? "met" : "MISSED"}`;
  const spread = r.spread ? `${r.spread[0].toFixed(2)}–${r.spread[1].toFixed(2)}×` : "";
  process.stdout.write(`| ${r.scenario} | ${fmt(r.recordsPerS)} | ${r.baseline} | ${fmt(r.baselinePerS)} | ${r.ratio.toFixed(2)}× | ${spread} | ${goal} |\n`);
}
