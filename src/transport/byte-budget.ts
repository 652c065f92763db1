/**
 * Bytes held for batches: request bodies being read and enriched, and answers not yet
 * written to their client. Without a cap, clients that post large batches and never
 * read the answers hold every answer in memory (24 such clients: ~4 GB). Past the cap
 * new batch requests are refused at once (503 + Retry-After); one client address may
 * hold only its share, and counts against the process-wide cap with no more than that
 * share, so what one address holds never refuses everyone else.
 */
/**
 * The key per-client shares are counted under: the address itself for IPv4 (and
 * IPv4-mapped IPv6), the /64 prefix for IPv6, since one IPv6 host can use any address
 * of its /64. Every client on one host (a sidecar's shipper, or tests on 127.0.0.1)
 * shares one key.
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  if (!address.includes(":")) return address;
  if (address.startsWith("::ffff:") && address.includes(".")) return address.slice(7);
  const pct = address.indexOf("%");
  const a = (pct < 0 ? address : address.slice(0, pct)).toLowerCase();
  const dbl = a.indexOf("::");
  const head = (dbl < 0 ? a : a.slice(0, dbl)).split(":").filter((g) => g !== "");
  // Groups missing after "::" are zeros; only the first four matter.
  while (head.length < 4) head.push("0");
  return `${head.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

/** One request's hold on a `ByteBudget`. */
export interface ByteLease {
  /** Bytes held now. */
  readonly bytes: number;
  /**
   * Sets the bytes held to `n`. Growing fails (false, unchanged) when it would pass the
   * cap or the client's share while anything else is held there: a request alone may
   * always go on, or a batch larger than the budget could never succeed.
   */
  resize(n: number): boolean;
  /** Sets the bytes held to `n` whatever the cap says (an answer already made). */
  hold(n: number): void;
  /** Gives everything back; later calls do nothing. */
  release(): void;
}

/** A process-wide byte budget with per-client shares; see the module comment. */
export class ByteBudget {
  private total = 0;
  /** Sum over clients of what each holds, each counted up to its share. */
  private charged = 0;
  private readonly byClient = new Map<string, number>();

  /**
   * @param max bytes held at once, process-wide (`http.max_buffered_bytes`).
   * @param maxPerClient bytes one client key may hold.
   */
  constructor(
    readonly max: number,
    readonly maxPerClient: number = max,
  ) {}

  /** Bytes held, by every client, counted in full. */
  get used(): number {
    return this.total;
  }

  /** Bytes held by `client`. */
  usedBy(client: string): number {
    return this.byClient.get(client) ?? 0;
  }

  /** True when a new request from `client` should be refused before it is read. */
  full(client: string): boolean {
    return this.usedBy(client) >= this.maxPerClient || this.charged >= this.max;
  }

  /** A lease of 0 bytes for `client`. */
  lease(client: string): ByteLease {
    let bytes = 0;
    let released = false;
    const share = (n: number): number => Math.min(n, this.maxPerClient);
    const set = (n: number): void => {
      const before = this.usedBy(client);
      const after = before + n - bytes;
      this.total += n - bytes;
      this.charged += share(after) - share(before);
      bytes = n;
      if (after <= 0) this.byClient.delete(client);
      else this.byClient.set(client, after);
    };
    return {
      get bytes() {
        return bytes;
      },
      resize: (n: number): boolean => {
        if (released) return true;
        if (n > bytes) {
          const clientOthers = this.usedBy(client) - bytes;
          const othersCharged = this.charged - share(this.usedBy(client)) + share(clientOthers);
          const grown = share(clientOthers + n) - share(clientOthers);
          if (clientOthers > 0 && clientOthers + n > this.maxPerClient) return false;
          if (othersCharged > 0 && othersCharged + grown > this.max) return false;
        }
        set(n);
        return true;
      },
      hold: (n: number): void => {
        if (!released) set(n);
      },
      release: (): void => {
        if (released) return;
        set(0);
        released = true;
      },
    };
  }
}

/** At most `n` holders at once; the others wait in turn (first come, first served). */
export class Gate {
  private held = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly n: number) {}

  /** Resolves once a place is free, with the function that gives it back (once). */
  async acquire(): Promise<() => void> {
    if (this.held >= this.n) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.held++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      // The place goes straight to the next waiter, if any.
      const next = this.queue.shift();
      if (next) next();
      else this.held--;
    };
  }
}
