/** Timing helpers: interleaved rounds so baseline and subject see the same machine noise. */

export interface Rate {
  name: string;
  /** Units (records, lookups) per second, median over rounds. */
  perS: number;
  /** The rate of each round, in round order. */
  rounds: number[];
}

/**
 * The lowest and highest of the per-round ratios `subject / baseline` (round r of
 * one against round r of the other, run back to back): how far a single round can
 * stray on this machine, printed beside the ratio of the medians.
 */
export function roundSpread(subject: readonly number[], baseline: readonly number[]): [number, number] {
  const rs: number[] = [];
  for (let i = 0; i < Math.min(subject.length, baseline.length); i++) rs.push((subject[i] as number) / (baseline[i] as number));
  return rs.length === 0 ? [0, 0] : [Math.min(...rs), Math.max(...rs)];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Process CPU time (user + system), milliseconds. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Runs each subject for `msPerRound` per round, `rounds` times, interleaved.
 * `fn` does one unit of work and returns how many units it did. Rates are per
 * second of this process's CPU time, not wall time: on a shared machine the
 * process is often off the CPU, and that time belongs to neither subject.
 * (Subjects that wait on another process, like dynalite, use `clock: "wall"`.)
 */
export async function compareRates(
  subjects: Array<{ name: string; fn: () => number | Promise<number> }>,
  opts: { rounds?: number; msPerRound?: number; clock?: "cpu" | "wall" } = {},
): Promise<Rate[]> {
  const now = opts.clock === "wall" ? () => performance.now() : cpuMs;
  const rounds = opts.rounds ?? 7;
  const ms = opts.msPerRound ?? 400;
  const samples = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  for (const s of subjects) await s.fn(); // warm-up
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let r = 0; r < rounds; r++) {
    for (const s of subjects) {
      // Start each round with a clean heap (npm run bench passes --expose-gc), so
      // one subject's garbage is not collected on the next one's time.
      gc?.();
      let units = 0;
      const start = now();
      let elapsed = 0;
      while (elapsed < ms) {
        units += await s.fn();
        elapsed = now() - start;
      }
      samples.get(s.name)?.push((units * 1000) / elapsed);
    }
  }
  return subjects.map((s) => ({ name: s.name, perS: median(samples.get(s.name) ?? []), rounds: samples.get(s.name) ?? [] }));
}

/** Percentile of a list of numbers (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}
