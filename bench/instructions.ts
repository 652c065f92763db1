/**
 * `npm run bench:instructions`: instructions per record for the in-process
 * scenarios, counted by valgrind (cachegrind, no cache simulation) — a figure that
 * does not move with the machine's load, for A/B work on a change where the
 * timed benchmark's noise (±10 % between runs here) hides a few per cent.
 *
 * Not a substitute for `npm run bench`: instructions leave out what memory
 * traffic, cache misses and the kernel cost, and the answer of an enriched record
 * is larger than its request. Needs valgrind (Debian: `apt-get install valgrind`);
 * without it, it says so and exits 0. Each scenario runs twice (0 and N measured
 * batches of 100 records after the same warm-up); the difference over the records
 * is the figure. Node runs with `--single-threaded` so the count repeats (±2 %).
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SCENARIOS, type Scenario } from "./instructions-child.js";

const run = promisify(execFile);
const MEASURED = Number(process.env.DNSGEO_INSTR_BATCHES ?? 800);
const child = fileURLToPath(new URL("./instructions-child.js", import.meta.url));

async function count(scenario: Scenario, batches: number): Promise<number> {
  const { stderr } = await run(
    "valgrind",
    ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", process.execPath, "--single-threaded", child, scenario, String(batches)],
    { maxBuffer: 16 << 20 },
  );
  const m = /I\s+refs:\s+([\d,]+)/.exec(stderr);
  if (!m?.[1]) throw new Error(`no instruction count from valgrind for ${scenario}:\n${stderr.slice(-500)}`);
  return Number(m[1].replace(/,/g, ""));
}

async function perRecord(scenario: Scenario): Promise<number> {
  const [base, more] = await Promise.all([count(scenario, 0), count(scenario, MEASURED)]);
  return (more - base) / (MEASURED * 100);
}

try {
  await run("valgrind", ["--version"]);
} catch {
  process.stdout.write("bench:instructions needs valgrind (Debian: apt-get install valgrind); skipped.\n");
  process.exit(0);
}
const rows: Array<[Scenario, number]> = [];
for (const s of SCENARIOS) {
  process.stderr.write(`instructions: ${s}…\n`);
  rows.push([s, await perRecord(s)]);
}
const none = rows.find(([s]) => s === "none")?.[1] ?? 1;
process.stdout.write("| scenario | instructions per record | vs pipeline, no lookup |\n|---|---:|---:|\n");
for (const [s, n] of rows) process.stdout.write(`| ${s} | ${Math.round(n).toLocaleString("en-US")} | ${(none / n).toFixed(2)}× |\n`);
