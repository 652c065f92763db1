/**
 * Forward mode's sink: sends an enriched batch to `forward.url` and says whether
 * the next hop took it. dnsgeo acknowledges the shipper only after this resolves
 * `ok`, so a batch is never acknowledged and then lost.
 *
 * Outcome mapping (what the shipper then sees):
 * - next hop 2xx → ok;
 * - connection refused/reset, timeout (`forward.timeout_ms`), 5xx, 408, 429 →
 *   `unavailable` (dnsgeo answers 503 + Retry-After: the shipper retries);
 * - any other 4xx → `rejected` with that status passed back (the same batch would
 *   be refused again, e.g. Fluent Bit `in_http` answering 400 to a wrong Content-Type);
 * - any other status (1xx, 3xx: `forward.url` is wrong) → `unavailable`, logged as an
 *   error: passed back, a shipper would drop the batch or read it as a success.
 */
import { Agent, request, type Dispatcher } from "undici";
import type { Config } from "../config.js";
import { ConfigError } from "../config.js";
import { canCompressZstd, compress, encodeItems } from "../pipeline/decode.js";
import type { EncodableItem, Framing } from "../pipeline/types.js";
import type { Logger } from "../observability/logger.js";

export type ForwardConfig = Config["forward"];

export type ForwardResult =
  | { ok: true; status: number }
  | { ok: false; kind: "unavailable"; status?: number; detail: string }
  | { ok: false; kind: "rejected"; status: number; detail: string };

const DEFAULT_CONTENT_TYPE: Record<Framing, string> = {
  ndjson: "application/x-ndjson",
  array: "application/json",
  object: "application/json",
};

/** Longest piece of a next hop's error body kept for the shipper's error message. */
const DETAIL_MAX = 512;

function parseHeaders(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    if (i <= 0) throw new ConfigError(`forward.headers: expected "Name: value", got a line without a colon`);
    out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

/** Sends enriched batches to the configured next hop. */
export class Forwarder {
  private readonly url: string;
  private readonly cfg: ForwardConfig;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly headers: Record<string, string>;
  private readonly logger: Logger;
  private closed = false;

  /**
   * @param cfg `forward.*`; `cfg.url` must be set.
   * @param deps.dispatcher an undici dispatcher (tests, proxies); default a dedicated Agent.
   */
  constructor(cfg: ForwardConfig, deps: { logger: Logger; dispatcher?: Dispatcher }) {
    if (!cfg.url) throw new Error("forward.url is not set");
    // Refused at start: every forward would fail and the shipper would retry forever.
    if (cfg.compression === "zstd" && !canCompressZstd) {
      throw new ConfigError("config key forward.compression (env DNSGEO_FORWARD_COMPRESSION): zstd needs Node.js 22.15 or newer to compress; use gzip, deflate or snappy");
    }
    this.url = cfg.url;
    this.cfg = cfg;
    this.logger = deps.logger;
    this.headers = parseHeaders(cfg.headers);
    this.ownDispatcher = deps.dispatcher === undefined;
    this.dispatcher =
      deps.dispatcher ??
      new Agent({
        connectTimeout: Math.min(cfg.timeout_ms, 10_000),
        headersTimeout: cfg.timeout_ms,
        bodyTimeout: cfg.timeout_ms,
        keepAliveTimeout: 4_000,
      });
  }

  /** Body framing sent for a request that came in with `framing`. */
  framingFor(framing: Framing): Framing {
    return this.cfg.framing === "same" ? framing : this.cfg.framing;
  }

  /** Encodes and sends `items`; never rejects. */
  async send(items: readonly EncodableItem[], framing: Framing): Promise<ForwardResult> {
    const out = this.framingFor(framing);
    const headers: Record<string, string> = Object.assign({}, this.headers);
    headers["content-type"] = this.cfg.content_type ?? DEFAULT_CONTENT_TYPE[out];
    let body: Buffer;
    try {
      body = encodeItems(out, items);
      if (this.cfg.compression !== "none") {
        body = compress(body, this.cfg.compression);
        headers["content-encoding"] = this.cfg.compression;
      }
    } catch (e) {
      this.logger.error({ err: e }, "forward: encoding the batch failed");
      return { ok: false, kind: "unavailable", detail: "encoding the batch failed" };
    }
    const signal = AbortSignal.timeout(this.cfg.timeout_ms);
    try {
      const res = await request(this.url, { method: "POST", headers, body, dispatcher: this.dispatcher, signal });
      const status = res.statusCode;
      if (status >= 200 && status < 300) {
        await res.body.dump();
        return { ok: true, status };
      }
      const text = await readDetail(res.body);
      if (status >= 500 || status === 408 || status === 429) {
        this.logger.warn({ status }, "forward: next hop answered a retryable status");
        return { ok: false, kind: "unavailable", status, detail: `next hop answered ${status}${text ? `: ${text}` : ""}` };
      }
      if (status < 400) {
        this.logger.error({ status }, `forward: next hop answered ${status}, neither success nor refusal (a redirect means forward.url is wrong); the shipper keeps the batch and retries`);
        return { ok: false, kind: "unavailable", status, detail: `next hop answered ${status}${text ? `: ${text}` : ""}` };
      }
      this.logger.error({ status }, "forward: next hop refused the batch");
      return { ok: false, kind: "rejected", status, detail: `next hop answered ${status}${text ? `: ${text}` : ""}` };
    } catch (e) {
      const err = e as Error & { code?: string };
      const timedOut = signal.aborted || err.name === "TimeoutError" || err.code === "UND_ERR_HEADERS_TIMEOUT" || err.code === "UND_ERR_BODY_TIMEOUT";
      const detail = timedOut ? `next hop did not answer within ${this.cfg.timeout_ms} ms` : `next hop unreachable (${err.code ?? err.name})`;
      this.logger.warn({ code: err.code ?? err.name }, "forward: " + detail);
      return { ok: false, kind: "unavailable", detail };
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
