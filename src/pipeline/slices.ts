/**
 * Work on one large batch (90 000 records: about a second of CPU) is cut into slices
 * that give the event loop back between them, so /livez and other clients' small
 * batches are answered meanwhile instead of queueing behind it.
 */
import { performance } from "node:perf_hooks";

/** Yields to the event loop between slices of a large batch's work. */
export interface Pause {
  /** True when the current slice has run long enough. */
  isDue(): boolean;
  /** Resolves on a later turn of the event loop; the next slice starts then. */
  due(): Promise<void>;
}

/** Slices of `sliceMs` of work each; `due()` waits for the check phase (after pending I/O). */
export class TimeSlices implements Pause {
  private start = performance.now();

  /** @param sliceMs work per slice, milliseconds. */
  constructor(private readonly sliceMs = 10) {}

  isDue(): boolean {
    return performance.now() - this.start >= this.sliceMs;
  }

  async due(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}

/** Decoded bodies at least this large are parsed, enriched and encoded in slices; smaller ones in one run. */
export const SLICED_BODY_BYTES = 1024 * 1024;
