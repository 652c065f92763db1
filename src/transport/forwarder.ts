/**
 * Forward mode's sink: sends an enriched batch to `forward.url` and says whether
 * the next hop took it. dnsgeo acknowledges the shipper only after this resolves
 * `ok`, so a batch is never acknowledged and then lost.
 *
 * A batch goes out in requests of at most `forward.max_body_bytes` (counted before
 * compression), one after another. What the next hop answers decides the rest:
 * - 2xx → those records are delivered;
 * - 413 → the request is cut in two and each half sent again, down to one record;
 * - any other 4xx → the same, to find the records it refuses; a record refused on
 *   its own (413 included) goes to the dead-letter file with the status and the
 *   start of the answer, and the rest of the batch is delivered;
 * - connection refused/reset, timeout (`forward.timeout_ms`), 5xx, 408, 429, and
 *   1xx/3xx (a redirect means `forward.url` is wrong) → `unavailable`: dnsgeo
 *   answers 503 + Retry-After and the shipper sends the whole batch again. Records
 *   of the batch delivered before that are then delivered twice: forward mode is
 *   at-least-once, never at-most-once.
 * `ok` means every record of the batch was delivered or dead-lettered; a
 * dead-letter file that is full or cannot be written makes it `unavailable`.
 */
import { Agent, request, type Dispatcher } from "undici";
import { ConfigError, headerObject, type Config } from "../config.js";
import { performance } from "node:perf_hooks";
import { canCompressZstd, compress } from "../codecs/compression.js";
import { encodeItems } from "../pipeline/framing.js";
import type { EncodableItem, Framing } from "../pipeline/types.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { DeadLetterFile } from "./dead-letter.js";

export type ForwardConfig = Config["forward"];

export type ForwardResult =
  | { ok: true; status: number; delivered: number; deadLettered: number }
  | { ok: false; kind: "unavailable"; status?: number; detail: string };

/** What became of each record of a batch (`deliver`). */
export interface DeliveryOutcome {
  /** Records the next hop accepted. */
  delivered: number;
  /** The last 2xx status seen (0 when nothing was sent). */
  status: number;
  /** Records refused on their own: index into the batch, the status and the start of the answer. */
  refused: { index: number; status: number; detail: string }[];
  /**
   * Set when a request could not be delivered and should be retried later. Records are
   * sent in order: those before `from` were delivered or refused, none from it on.
   */
  unavailable?: { status?: number; detail: string; from: number };
}

/** A batch encoded once, as the elements the next hop would get, so it can be cut anywhere. */
export interface EncodedBatch {
  readonly framing: Framing;
  readonly count: number;
  /** Bytes element `i` adds to a body. */
  bytesOf(i: number): number;
  /** Body of elements [lo, hi). */
  body(lo: number, hi: number): Buffer;
  /** Element `i`'s text as forwarded. */
  text(i: number): string;
}

/** Encodes items in a framing, keeping each item's place in the bytes. */
export function encodeBatch(framing: Framing, items: readonly EncodableItem[]): EncodedBatch {
  if (framing === "ndjson") {
    const whole = encodeItems("ndjson", items);
    const starts = new Array<number>(items.length + 1);
    starts[0] = 0;
    let at = 0;
    for (let i = 0; i < items.length; i++) {
      at = whole.indexOf(0x0a, at) + 1;
      starts[i + 1] = at;
    }
    const start = (i: number): number => starts[i] as number;
    return {
      framing,
      count: items.length,
      bytesOf: (i) => start(i + 1) - start(i),
      body: (lo, hi) => whole.subarray(start(lo), start(hi)),
      text: (i) => whole.toString("utf8", start(i), start(i + 1) - 1),
    };
  }
  // JSON array elements, or one object: each element encoded on its own.
  const elems = items.map((it) => {
    const b = encodeItems("array", [it]);
    return b.subarray(1, b.length - 1);
  });
  const el = (i: number): Buffer => elems[i] as Buffer;
  return {
    framing,
    count: items.length,
    bytesOf: (i) => el(i).length + 1,
    body: (lo, hi) => {
      if (framing === "object" && hi - lo === 1) return el(lo);
      const parts: Buffer[] = [OPEN];
      for (let i = lo; i < hi; i++) {
        if (i > lo) parts.push(COMMA);
        parts.push(el(i));
      }
      parts.push(CLOSE);
      return Buffer.concat(parts);
    },
    text: (i) => el(i).toString("utf8"),
  };
}

const OPEN = Buffer.from("[");
const COMMA = Buffer.from(",");
const CLOSE = Buffer.from("]");

const DEFAULT_CONTENT_TYPE: Record<Framing, string> = {
  ndjson: "application/x-ndjson",
  array: "application/json",
  object: "application/json",
};

/** Longest piece of a next hop's error body kept for the shipper's error message. */
const DETAIL_MAX = 512;

type PostResult =
  | { kind: "ok"; status: number }
  | { kind: "refused"; status: number; detail: string }
  | { kind: "unavailable"; status?: number; detail: string };

/** Sends enriched batches to the configured next hop. */
export class Forwarder {
  private readonly url: string;
  private readonly cfg: ForwardConfig;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly headers: Record<string, string>;
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly deadLetter: DeadLetterFile | undefined;
  private closed = false;

  /**
   * @param cfg `forward.*`; `cfg.url` must be set.
   * @param deps.dispatcher an undici dispatcher (tests, proxies); default a dedicated Agent.
   * @param deps.deadLetter where refused records go; without one a refused record makes the batch `unavailable`.
   */
  constructor(cfg: ForwardConfig, deps: { logger: Logger; dispatcher?: Dispatcher; metrics?: Metrics; deadLetter?: DeadLetterFile }) {
    if (!cfg.url) throw new Error("forward.url is not set");
    // Refused at start: every forward would fail and the shipper would retry forever.
    if (cfg.compression === "zstd" && !canCompressZstd) {
      throw new ConfigError("config key forward.compression (env DNSGEO_FORWARD_COMPRESSION): zstd needs Node.js 22.15 or newer to compress; use gzip, deflate or snappy");
    }
    this.url = cfg.url;
    this.cfg = cfg;
    this.logger = deps.logger;
    this.metrics = deps.metrics;
    this.deadLetter = deps.deadLetter;
    this.headers = headerObject(cfg.headers);
    this.ownDispatcher = deps.dispatcher === undefined;
    this.dispatcher =
      deps.dispatcher ??
      new Agent({
        connectTimeout: Math.min(cfg.timeout_ms, 10_000),
        headersTimeout: cfg.timeout_ms,
        bodyTimeout: cfg.timeout_ms,
        keepAliveTimeout: 4_000,
      });
    if (this.deadLetter && this.metrics) {
      const gauge = this.metrics.forwardDeadLetterBytes;
      this.deadLetter.size().then(
        (n) => gauge.set(n),
        () => undefined,
      );
    }
  }

  /** Body framing sent for a request that came in with `framing`. */
  framingFor(framing: Framing): Framing {
    return this.cfg.framing === "same" ? framing : this.cfg.framing;
  }

  /** Encodes and sends `items`, dead-lettering what the next hop refuses; never rejects. */
  async send(items: readonly EncodableItem[], framing: Framing): Promise<ForwardResult> {
    let batch: EncodedBatch;
    try {
      batch = encodeBatch(this.framingFor(framing), items);
    } catch (e) {
      this.logger.error({ err: e }, "forward: encoding the batch failed");
      return { ok: false, kind: "unavailable", detail: "encoding the batch failed" };
    }
    const out = await this.deliver(batch);
    if (out.unavailable) {
      const u = out.unavailable;
      return u.status === undefined ? { ok: false, kind: "unavailable", detail: u.detail } : { ok: false, kind: "unavailable", status: u.status, detail: u.detail };
    }
    if (out.refused.length > 0) {
      if (!this.deadLetter) {
        const r = out.refused[0] as DeliveryOutcome["refused"][number];
        return { ok: false, kind: "unavailable", status: r.status, detail: `${out.refused.length} record(s) refused and no dead-letter file: ${r.detail}` };
      }
      const time = new Date().toISOString();
      const written = await this.deadLetter.append(out.refused.map((r) => ({ text: batch.text(r.index), reason: { status: r.status, answer: r.detail, time } })));
      if (!written.ok) {
        this.logger.error({ records: out.refused.length }, `forward: ${written.detail}; the batch is answered 503 so the shipper keeps it`);
        return { ok: false, kind: "unavailable", detail: written.detail };
      }
      this.metrics?.forwardDeadLetterRecords.inc(out.refused.length);
      this.metrics?.forwardDeadLetterBytes.set(written.bytes);
      this.logger.warn({ records: out.refused.length, status: out.refused[0]?.status }, "forward: the next hop refused records; written to the dead-letter file");
    }
    return { ok: true, status: out.status, delivered: out.delivered, deadLettered: out.refused.length };
  }

  /**
   * Sends a whole encoded batch in requests of at most `forward.max_body_bytes`,
   * cutting refused requests in two until the refused records are found. Stops at
   * the first `unavailable` answer; never rejects.
   */
  async deliver(batch: EncodedBatch): Promise<DeliveryOutcome> {
    const out: DeliveryOutcome = { delivered: 0, status: 0, refused: [] };
    const max = this.cfg.max_body_bytes;
    let lo = 0;
    while (lo < batch.count && !out.unavailable) {
      let hi = lo + 1;
      let bytes = batch.bytesOf(lo);
      while (hi < batch.count && bytes + batch.bytesOf(hi) <= max) bytes += batch.bytesOf(hi++);
      await this.deliverRange(batch, lo, hi, out);
      lo = hi;
    }
    return out;
  }

  private async deliverRange(batch: EncodedBatch, lo: number, hi: number, out: DeliveryOutcome): Promise<void> {
    const r = await this.post(batch.body(lo, hi), batch.framing);
    if (r.kind === "ok") {
      out.delivered += hi - lo;
      out.status = r.status;
      return;
    }
    if (r.kind === "unavailable") {
      out.unavailable = r.status === undefined ? { detail: r.detail, from: lo } : { status: r.status, detail: r.detail, from: lo };
      return;
    }
    if (hi - lo === 1) {
      out.refused.push({ index: lo, status: r.status, detail: r.detail });
      return;
    }
    this.metrics?.forwardSplits.inc();
    const mid = lo + ((hi - lo) >> 1);
    await this.deliverRange(batch, lo, mid, out);
    if (!out.unavailable) await this.deliverRange(batch, mid, hi, out);
  }

  private async post(raw: Buffer, framing: Framing): Promise<PostResult> {
    const headers: Record<string, string> = Object.assign({}, this.headers);
    headers["content-type"] = this.cfg.content_type ?? DEFAULT_CONTENT_TYPE[framing];
    let body = raw;
    try {
      if (this.cfg.compression !== "none") {
        body = compress(raw, this.cfg.compression);
        headers["content-encoding"] = this.cfg.compression;
      }
    } catch (e) {
      this.logger.error({ err: e }, "forward: compressing the batch failed");
      return { kind: "unavailable", detail: "compressing the batch failed" };
    }
    const m = this.metrics;
    const started = performance.now();
    const signal = AbortSignal.timeout(this.cfg.timeout_ms);
    m?.forwardBytes.inc(body.length);
    try {
      const res = await request(this.url, { method: "POST", headers, body, dispatcher: this.dispatcher, signal });
      const status = res.statusCode;
      m?.forwardDuration.observe((performance.now() - started) / 1000);
      m?.forwardRequests.inc({ class: `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx` });
      if (status >= 200 && status < 300) {
        await res.body.dump();
        return { kind: "ok", status };
      }
      const text = await readDetail(res.body);
      const detail = `next hop answered ${status}${text ? `: ${text}` : ""}`;
      if (status >= 500 || status === 408 || status === 429) {
        this.logger.warn({ status }, "forward: next hop answered a retryable status");
        return { kind: "unavailable", status, detail };
      }
      if (status < 400) {
        this.logger.error({ status }, `forward: next hop answered ${status}, neither success nor refusal (a redirect means forward.url is wrong); the shipper keeps the batch and retries`);
        return { kind: "unavailable", status, detail };
      }
      this.logger.debug({ status }, "forward: next hop refused a request");
      return { kind: "refused", status, detail: text };
    } catch (e) {
      m?.forwardRequests.inc({ class: "error" });
      const err = e as Error & { code?: string };
      const timedOut = signal.aborted || err.name === "TimeoutError" || err.code === "UND_ERR_HEADERS_TIMEOUT" || err.code === "UND_ERR_BODY_TIMEOUT";
      const detail = timedOut ? `next hop did not answer within ${this.cfg.timeout_ms} ms` : `next hop unreachable (${err.code ?? err.name})`;
      this.logger.warn({ code: err.code ?? err.name }, "forward: " + detail);
      return { kind: "unavailable", detail };
    }
  }

  /** Idempotent. */
  async close(): Promise<void> {
    if (!this.ownDispatcher || this.closed) return;
    this.closed = true;
    await this.dispatcher.close();
  }
}

async function readDetail(body: Dispatcher.ResponseData["body"]): Promise<string> {
  try {
    const t = await body.text();
    return t.length > DETAIL_MAX ? t.slice(0, DETAIL_MAX) : t.trim();
  } catch {
    return "";
  }
}
