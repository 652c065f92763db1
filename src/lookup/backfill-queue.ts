/**
 * IPs waiting for the provider in the background. Bounded (oldest dropped
 * first, counted), deduplicated across queued and in-flight IPs, so an IP is
 * never queued or sent twice at once.
 */
import type { Metrics } from "../observability/metrics.js";
import type { Logger } from "../observability/logger.js";

export interface BackfillQueueOptions {
  /** Most IPs waiting (in flight ones not included). */
  max: number;
  metrics?: Metrics;
  logger?: Logger;
  /** Called with each IP dropped because the queue was full. */
  onDrop?: (ip: string) => void;
}

const QUEUE = "backfill";

export class BackfillQueue {
  /** Insertion order is age order: the first key is the oldest. */
  private queued = new Map<string, true>();
  private readonly flying = new Set<string>();
  private droppedCount = 0;

  constructor(private readonly opts: BackfillQueueOptions) {}

  /** IPs waiting. */
  get size(): number {
    return this.queued.size;
  }

  /** IPs taken and not yet done. */
  get inFlight(): number {
    return this.flying.size;
  }

  /** IPs dropped so far because the queue was full. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** True when the IP is queued or in flight. */
  has(ip: string): boolean {
    return this.queued.has(ip) || this.flying.has(ip);
  }

  /** Queues an IP; false when it is already queued or in flight. Drops the oldest when full. */
  add(ip: string): boolean {
    if (this.has(ip)) return false;
    this.queued.set(ip, true);
    if (this.queued.size > this.opts.max) this.dropOldest();
    this.gauge();
    return true;
  }

  /** Takes up to `n` of the oldest IPs and marks them in flight. */
  take(n: number): string[] {
    const out: string[] = [];
    for (const ip of this.queued.keys()) {
      if (out.length >= n) break;
      out.push(ip);
    }
    for (const ip of out) {
      this.queued.delete(ip);
      this.flying.add(ip);
    }
    this.gauge();
    return out;
  }

  /** Marks in-flight IPs as finished (answered or given up). */
  done(ips: Iterable<string>): void {
    for (const ip of ips) this.flying.delete(ip);
  }

  /**
   * Puts in-flight IPs back at the head of the queue (their send failed), so
   * they go first when the provider is reachable again.
   */
  requeue(ips: readonly string[]): void {
    const head = new Map<string, true>();
    for (const ip of ips) {
      if (!this.flying.delete(ip)) continue;
      if (!this.queued.has(ip)) head.set(ip, true);
    }
    if (head.size === 0) return;
    for (const ip of this.queued.keys()) head.set(ip, true);
    this.queued = head;
    while (this.queued.size > this.opts.max) this.dropOldest();
    this.gauge();
  }

  /** Forgets queued IPs (not in-flight ones); returns them. */
  clear(): string[] {
    const out = [...this.queued.keys()];
    this.queued.clear();
    this.gauge();
    return out;
  }

  private dropOldest(): void {
    const first = this.queued.keys().next();
    if (first.done) return;
    this.queued.delete(first.value);
    this.droppedCount++;
    this.opts.metrics?.queueDropped.inc({ queue: QUEUE });
    if (this.droppedCount === 1) this.opts.logger?.warn({ queue: QUEUE, max: this.opts.max }, "backfill queue full: dropping the oldest IPs (counted in dnsgeo_queue_dropped_total)");
    this.opts.onDrop?.(first.value);
  }

  private gauge(): void {
    this.opts.metrics?.queueDepth.set({ queue: QUEUE }, this.queued.size);
  }
}
