import { performance } from "node:perf_hooks";

/**
 * The in-flight cap shared by HTTP and gRPC: one budget for the process, because
 * both transports compete for the same event loop and lookup chain. Past the cap a
 * request is refused at once (503 + Retry-After / RESOURCE_EXHAUSTED) so accepted
 * requests keep their latency and the shipper retries later.
 */
export class InflightLimiter {
  private n = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly byClient = new Map<string, number>();

  /**
   * @param max requests handled at once (`http.max_inflight_requests`).
   * @param maxPerClient slots one client address may hold (`http.max_inflight_per_client`),
   *   so slow or greedy clients at one address leave the rest of the slots to others.
   */
  constructor(
    readonly max: number,
    readonly maxPerClient: number = max,
  ) {}

  /** Takes a slot; false when the cap, or `client`'s share of it, is reached. */
  tryAcquire(client?: string): boolean {
    if (this.n >= this.max) return false;
    if (client !== undefined) {
      const held = this.byClient.get(client) ?? 0;
      if (held >= this.maxPerClient) return false;
      this.byClient.set(client, held + 1);
    }
    this.n++;
    return true;
  }

  /** Gives back a slot taken with the same `client`. */
  release(client?: string): void {
    if (client !== undefined) {
      const held = this.byClient.get(client) ?? 0;
      if (held <= 1) this.byClient.delete(client);
      else this.byClient.set(client, held - 1);
    }
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

/**
 * Detects a request that queued behind a burst. Node handles all ready sockets of
 * one event-loop turn back to back; when requests are CPU-bound and quick, the
 * in-flight count stays low while the queue grows in the socket buffers, so a cap on
 * in-flight requests alone cannot keep latency down. This guard notes when the
 * current turn's first request arrived (a setImmediate, armed only while traffic
 * flows, marks the end of the turn) and says a later request is over budget once
 * the turn has run for `maxMs`.
 */
export class LoopTurnGuard {
  private turnStart = 0;
  private armed = false;
  private readonly endTurn = (): void => {
    this.armed = false;
  };

  /** @param maxMs budget per turn, milliseconds; 0 disables the guard. */
  constructor(
    private readonly maxMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Call once per arriving request; true when it should be refused. */
  exceeded(): boolean {
    if (this.maxMs <= 0) return false;
    const t = this.now();
    if (!this.armed) {
      this.armed = true;
      this.turnStart = t;
      setImmediate(this.endTurn);
      return false;
    }
    return t - this.turnStart > this.maxMs;
  }
}
