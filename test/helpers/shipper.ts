/**
 * A client that behaves like a log shipper (Vector's http sink, Fluent Bit's
 * out_http): NDJSON batches of records with unique ids, a few batches in flight,
 * retries with backoff on 429/503, timeouts and connection errors, gives a batch up
 * (drops it, as shippers do) on any other 4xx. It counts what it sent and what was
 * acknowledged, and checks that an /v1/enrich answer carries every id it sent.
 */
import { performance } from "node:perf_hooks";
import { Agent, request } from "undici";

/** Special-purpose answers every generated batch carries, so "none reached the provider" means something. */
export const SPECIAL_ANSWERS: readonly string[] = ["10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1", "fe80::1%eth0", "127.1", "192.168.0.1", "100.64.0.1", "0x7f.1"];

/** A Route 53 Resolver query log record with id `rid` and the given answers. */
export function route53Record(rid: string, answers: readonly string[]): string {
  return JSON.stringify({
    version: "1.100000",
    account_id: "123456789012",
    region: "eu-west-1",
    vpc_id: "vpc-0abc",
    query_timestamp: "2024-05-01T12:00:00Z",
    query_name: `host-${rid}.example.com.`,
    query_type: "A",
    query_class: "IN",
    rcode: "NOERROR",
    answers: answers.map((ip) => ({ Rdata: ip, Type: ip.includes(":") ? "AAAA" : "A", Class: "IN" })),
    srcaddr: "10.0.0.5",
    srcport: "53000",
    transport: "UDP",
    srcids: { instance: "i-0abc" },
    rid,
  });
}

/** A public-looking IPv4 derived from `n` (outside every special-purpose range). */
export function publicIp(n: number): string {
  return `23.${(n >> 16) & 0xff}.${(n >> 8) & 0xff}.${(n & 0xff) || 1}`;
}

export interface ShipperOptions {
  /** Base URL (`http://host:port`), or a function giving the current one (a restarted server). */
  target: string | (() => string);
  /** `/v1/enrich` (default) or `/v1/forward`. */
  path?: string;
  records: number;
  batchSize: number;
  /** Batches in flight at once. */
  concurrency: number;
  /** Distinct public IPs to draw answers from. */
  ipPool?: number;
  /** Every n-th record gets one special-purpose answer (0: none). Default 3. */
  specialEvery?: number;
  /** Per-attempt timeout, milliseconds (the shipper's own request timeout). */
  requestTimeoutMs?: number;
  /** Longest backoff between attempts; Retry-After is honoured up to it. Milliseconds. */
  maxBackoffMs?: number;
  /** Give up retrying (and count the batch lost) after this long, milliseconds. */
  giveUpMs?: number;
  headers?: Record<string, string>;
  /** Prefix of record ids (unique per run). */
  idPrefix?: string;
  /** Called after every acknowledged batch with the running total. */
  onAck?: (acknowledged: number) => void;
}

export interface ShipperResult {
  sent: number;
  acknowledged: number;
  /** Records in batches given up (4xx, or retries past giveUpMs). */
  dropped: number;
  /** Attempts that did not succeed, by status or error code. */
  errors: Record<string, number>;
  /** Latency of every attempt answered 2xx, milliseconds. */
  latenciesMs: number[];
  /** Ids sent, in order. */
  ids: string[];
  /** /v1/enrich answers whose lines did not carry exactly the ids sent. */
  mismatches: number;
}

/** p-quantile (0..1) of a list of numbers; 0 for an empty list. */
export function quantile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] as number;
}

/** Sends `records` records in batches and retries like a shipper until each batch is acknowledged or given up. */
export async function runShipper(opts: ShipperOptions): Promise<ShipperResult> {
  const target = typeof opts.target === "function" ? opts.target : () => opts.target as string;
  const path = opts.path ?? "/v1/enrich";
  const pool = opts.ipPool ?? 1000;
  const specialEvery = opts.specialEvery ?? 3;
  const timeoutMs = opts.requestTimeoutMs ?? 5000;
  const maxBackoff = opts.maxBackoffMs ?? 200;
  const giveUpMs = opts.giveUpMs ?? 30_000;
  const prefix = opts.idPrefix ?? `r${Date.now().toString(36)}`;
  const agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs, keepAliveTimeout: 4000 });
  const res: ShipperResult = { sent: 0, acknowledged: 0, dropped: 0, errors: {}, latenciesMs: [], ids: [], mismatches: 0 };
  const err = (k: string): void => {
    res.errors[k] = (res.errors[k] ?? 0) + 1;
  };

  const batches: Array<{ ids: string[]; body: string }> = [];
  for (let start = 0; start < opts.records; start += opts.batchSize) {
    const ids: string[] = [];
    const lines: string[] = [];
    for (let i = start; i < Math.min(opts.records, start + opts.batchSize); i++) {
      const rid = `${prefix}-${i}`;
      const answers = [publicIp((i * 7919) % pool), publicIp((i * 104729 + 13) % pool)];
      if (specialEvery > 0 && i % specialEvery === 0) answers.push(SPECIAL_ANSWERS[(i / specialEvery) % SPECIAL_ANSWERS.length] as string);
      ids.push(rid);
      lines.push(route53Record(rid, answers));
    }
    batches.push({ ids, body: lines.join("\n") + "\n" });
  }

  const shipOne = async (b: { ids: string[]; body: string }): Promise<void> => {
    res.sent += b.ids.length;
    for (const id of b.ids) res.ids.push(id);
    const began = performance.now();
    let backoff = 10;
    for (;;) {
      const t0 = performance.now();
      let wait = backoff;
      try {
        const r = await request(target() + path, {
          method: "POST",
          body: b.body,
          headers: Object.assign({ "content-type": "application/x-ndjson" }, opts.headers),
          dispatcher: agent,
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await r.body.text();
        if (r.statusCode >= 200 && r.statusCode < 300) {
          res.latenciesMs.push(performance.now() - t0);
          if (path === "/v1/enrich") {
            const lines = text.split("\n").filter((l) => l !== "");
            const got = lines.map((l) => (JSON.parse(l) as { rid?: string }).rid);
            if (got.length !== b.ids.length || got.some((id, i) => id !== b.ids[i])) res.mismatches++;
          }
          res.acknowledged += b.ids.length;
          opts.onAck?.(res.acknowledged);
          return;
        }
        err(String(r.statusCode));
        if (r.statusCode !== 429 && r.statusCode !== 503 && r.statusCode < 500) {
          res.dropped += b.ids.length;
          return;
        }
        const ra = Number(r.headers["retry-after"]);
        if (Number.isFinite(ra) && ra > 0) wait = Math.max(wait, ra * 1000);
      } catch (e) {
        const x = e as { code?: string; name?: string };
        err(x.code ?? x.name ?? "error");
      }
      if (performance.now() - began > giveUpMs) {
        res.dropped += b.ids.length;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(wait, maxBackoff)));
      backoff = Math.min(backoff * 2, maxBackoff);
    }
  };

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < batches.length) await shipOne(batches[next++] as { ids: string[]; body: string });
  };
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, () => worker()));
  } finally {
    await agent.close();
  }
  return res;
}
