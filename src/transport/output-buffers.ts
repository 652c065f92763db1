/**
 * Reused buffers for response bodies: a new ~145 KB buffer per answer is memory the
 * process has not touched lately, and writing into it page-faults (a fifth of an
 * all-hits batch's CPU; docs/performance.md has the measurements).
 *
 * A buffer is taken for one response and given back once the response is written
 * to the socket (`res.end`'s callback); one that never comes back (the client went
 * away) is left to the GC. Free buffers are kept up to a total size; bodies smaller
 * than `minBufferBytes` (Node's own buffer pool serves those) or larger than
 * `maxBufferBytes` are not pooled.
 */
export interface OutputBuffersOptions {
  /** Total bytes of free buffers kept for reuse (default 32 MiB). */
  maxFreeBytes?: number;
  /** Largest buffer pooled; larger bodies get their own buffer (default 16 MiB). */
  maxBufferBytes?: number;
  /** Smallest body pooled; smaller ones get their own buffer (default 16 KiB). */
  minBufferBytes?: number;
}

/** Size of the smallest buffer made; larger ones are powers of two above it. */
const MIN_BUFFER = 64 * 1024;
/** Free buffers kept at most, whatever their size (bounds the search in `take`). */
const MAX_FREE_COUNT = 64;

export class OutputBuffers {
  private readonly free: Buffer[] = [];
  private freeBytes = 0;
  private readonly maxFreeBytes: number;
  private readonly maxBufferBytes: number;
  private readonly minBufferBytes: number;

  constructor(opts: OutputBuffersOptions = {}) {
    this.maxFreeBytes = opts.maxFreeBytes ?? 32 * 1024 * 1024;
    this.maxBufferBytes = Math.min(opts.maxBufferBytes ?? 16 * 1024 * 1024, this.maxFreeBytes);
    this.minBufferBytes = opts.minBufferBytes ?? 16 * 1024;
  }

  /** Free buffers held now. */
  get size(): number {
    return this.free.length;
  }

  /**
   * A buffer of at least `bytes` that nobody else uses until it is given back, or
   * undefined when `bytes` is not pooled (under `minBufferBytes`, over `maxBufferBytes`).
   */
  take(bytes: number): Buffer | undefined {
    if (bytes > this.maxBufferBytes || bytes < this.minBufferBytes) return undefined;
    const free = this.free;
    // The smallest that fits, so a small answer does not hold the buffer a large one needs;
    // among equals the newest (the likeliest still in cache).
    let best = -1;
    for (let i = free.length - 1; i >= 0; i--) {
      const len = (free[i] as Buffer).length;
      if (len >= bytes && (best < 0 || len < (free[best] as Buffer).length)) best = i;
    }
    if (best >= 0) {
      const b = free[best] as Buffer;
      free.splice(best, 1);
      this.freeBytes -= b.length;
      return b;
    }
    // Powers of two, so a slightly larger batch next time still fits.
    let size = MIN_BUFFER;
    while (size < bytes) size *= 2;
    return Buffer.allocUnsafe(Math.min(size, this.maxBufferBytes));
  }

  /** Returns a buffer from `take`; the caller must not touch it (or views of it) again. */
  give(b: Buffer): void {
    // Full: the buffer is left to the GC (a burst of large answers is not kept for good).
    if (this.freeBytes + b.length > this.maxFreeBytes || this.free.length >= MAX_FREE_COUNT) return;
    this.free.push(b);
    this.freeBytes += b.length;
  }
}
