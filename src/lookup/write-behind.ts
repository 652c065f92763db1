/**
 * The write-behind queue every persistent tier (SQLite, Redis, DynamoDB) keeps: the
 * latest entry per IP until the next flush, bounded, oldest dropped first and counted
 * in `dnsgeo_queue_dropped_total{queue}`, its depth in `dnsgeo_queue_depth{queue}`.
 * Reads consult it too (`get`), so a tier answers its own writes before they land.
 */
import type { Entry } from "./lookup.js";
import type { Metrics } from "../observability/metrics.js";

export class PendingWrites {
  private readonly entries = new Map<string, Entry>();
  private flushing: Promise<void> | undefined;

  /**
   * `queue`: the metric label (`sqlite_write`, `redis_write`, `dynamodb_write`);
   * `max`: entries kept at most.
   */
  constructor(
    private readonly queue: string,
    private readonly max: number,
    private readonly metrics?: Metrics,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The entry waiting for `ip`, if any (read-your-writes). */
  get(ip: string): Entry | undefined {
    return this.entries.get(ip);
  }

  /** Queues the entries (a later entry for an IP replaces the earlier one and moves to the back). */
  add(entries: readonly Entry[]): void {
    let dropped = 0;
    for (const e of entries) {
      this.entries.delete(e.ip);
      this.entries.set(e.ip, e);
      if (this.entries.size > this.max) {
        this.entries.delete(this.entries.keys().next().value as string);
        dropped++;
      }
    }
    if (dropped > 0) this.countDropped(dropped);
    this.metrics?.queueDepth.set({ queue: this.queue }, this.entries.size);
  }

  /** Up to `n` queued entries, oldest first, left in the queue (see `written`). */
  peek(n: number): Entry[] {
    const out: Entry[] = [];
    for (const e of this.entries.values()) {
      if (out.length >= n) break;
      out.push(e);
    }
    return out;
  }

  /** Removes the entries of a `peek` that were written, unless a newer entry replaced them meanwhile. */
  written(batch: readonly Entry[]): void {
    for (const e of batch) if (this.entries.get(e.ip) === e) this.entries.delete(e.ip);
    this.metrics?.queueDepth.set({ queue: this.queue }, this.entries.size);
  }

  /** Everything queued, oldest first; the queue is empty after. */
  takeAll(): Entry[] {
    const batch = Array.from(this.entries.values());
    this.clear();
    return batch;
  }

  clear(): void {
    this.entries.clear();
    this.metrics?.queueDepth.set({ queue: this.queue }, 0);
  }

  /** Counts entries lost after they left the queue (a write that failed for good). */
  countDropped(n: number): void {
    this.metrics?.queueDropped.inc({ queue: this.queue }, n);
  }

  /**
   * Writes everything queued with `write`, one flush at a time: a call while one runs
   * waits for it, then flushes what came meanwhile. `write` must not reject.
   */
  flush(write: (batch: Entry[]) => Promise<void>): Promise<void> {
    if (this.flushing) return this.flushing.then(() => (this.entries.size > 0 ? this.flush(write) : undefined));
    if (this.entries.size === 0) return Promise.resolve();
    this.flushing = write(this.takeAll()).finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }
}
