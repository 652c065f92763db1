/**
 * The in-flight cap shared by HTTP and gRPC: one budget for the process, because
 * both transports compete for the same event loop and lookup chain. Past the cap a
 * request is refused at once (503 + Retry-After / RESOURCE_EXHAUSTED) so accepted
 * requests keep their latency and the shipper retries later.
 */
export class InflightLimiter {
  private n = 0;
  private idleWaiters: Array<() => void> = [];

  /** @param max requests handled at once (`http.max_inflight_requests`). */
  constructor(readonly max: number) {}

  /** Takes a slot; false when the cap is reached. */
  tryAcquire(): boolean {
    if (this.n >= this.max) return false;
    this.n++;
    return true;
  }

  release(): void {
    if (this.n > 0) this.n--;
    if (this.n === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }

  get inflight(): number {
    return this.n;
  }

  /** Resolves when no slot is taken. */
  idle(): Promise<void> {
    if (this.n === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

/** Resolves after `ms` or when `p` settles, whichever comes first; true when `p` won. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([p.then(() => true as const, () => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
