/**
 * Sends an enriched OTLP logs request to `otlp.next_hop` (OTLP/HTTP, protobuf) and says
 * whether it took it; `/v1/logs` and `LogsService/Export` answer success only after this.
 *
 * - A request larger than `otlp.max_send_bytes` (encoded) goes out as several, cut
 *   between log records, one after another; one the next hop answers 413 is cut in two.
 * - 2xx: delivered; the next hop's `partial_success` (rejected records, message) is added
 *   up and handed back, for dnsgeo's own answer to carry.
 * - connection refused/reset, timeout (`otlp.timeout_ms`), 408, 429, any 5xx, 1xx/3xx:
 *   `unavailable`, the shipper gets 503 / UNAVAILABLE and sends the request again. When
 *   earlier parts of the request were delivered, the failed part is first tried again for
 *   up to `otlp.timeout_ms`, since the shipper would send those parts twice; past that
 *   they are (at-least-once, as forward mode).
 * - any other 4xx on one record: that record is counted rejected (a permanent error in
 *   OTLP terms, which the shipper would get from the next hop itself); on more records
 *   the request is cut in two to find which.
 */
import { Agent, request, type Dispatcher } from "undici";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { performance } from "node:perf_hooks";
import { headerObject, type Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import { Gate } from "./byte-budget.js";
import { TimeSlices, type Pause } from "../pipeline/slices.js";
import { decodeLogsResponse, encodeLogsRequestPieces, int64Value, type EncodedLogsRequest, type ExportLogsRequest } from "./otlp-proto.js";

export type OtlpConfig = Config["otlp"];

const gzipAsync = promisify(gzip);

export type OtlpSendResult =
  | { ok: true; rejected: number; errorMessage: string; requests: number }
  | { ok: false; status?: number; detail: string };

/** First and longest pause between tries of a part whose earlier parts were delivered. */
const PART_RETRY_FIRST_MS = 250;
const PART_RETRY_MAX_MS = 2000;

/** Longest piece of a next hop's error body kept for logs and the shipper's error message. */
const DETAIL_MAX = 512;

/** The URL requests go to: `otlp.next_hop`, with `/v1/logs` added when it names no path. */
export function nextHopUrl(nextHop: string): string {
  const u = new URL(nextHop);
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/v1/logs";
  return u.toString();
}

export class OtlpForwarder {
  private readonly url: string;
  private readonly dispatcher: Dispatcher;
  private readonly headers: Record<string, string>;
  /** Requests to the next hop at once (`otlp.max_concurrent_requests`); the rest wait their turn. */
  private readonly gate: Gate;

  constructor(
    private readonly cfg: OtlpConfig,
    private readonly deps: { logger: Logger; dispatcher?: Dispatcher },
  ) {
    if (!cfg.next_hop) throw new Error("otlp.next_hop is not set");
    this.url = nextHopUrl(cfg.next_hop);
    this.dispatcher =
      deps.dispatcher ??
      new Agent({ connectTimeout: Math.min(cfg.timeout_ms, 10_000), headersTimeout: cfg.timeout_ms, bodyTimeout: cfg.timeout_ms, keepAliveTimeout: 4_000 });
    this.gate = new Gate(cfg.max_concurrent_requests);
    this.headers = { "content-type": "application/x-protobuf", "user-agent": "dnsgeo" };
    if (cfg.compression === "gzip") this.headers["content-encoding"] = "gzip";
    Object.assign(this.headers, headerObject(cfg.headers));
  }

  /**
   * Sends `req`, cut as needed; `ok` once every record was delivered or rejected by the
   * next hop. It is encoded record by record (in `pause`'s slices) and cut from those
   * bytes, so no part is encoded twice and a large request does not hold the event loop.
   */
  async send(req: ExportLogsRequest, pause: Pause = new TimeSlices()): Promise<OtlpSendResult> {
    const enc = await encodeLogsRequestPieces(req, pause);
    const acc = { rejected: 0, errorMessage: "", requests: 0 };
    let delivered = false;
    for (const [lo, hi] of enc.cut(this.cfg.max_send_bytes)) {
      let r = await this.sendRange(enc, lo, hi, acc);
      if (r !== undefined && delivered) {
        // Parts before this one were delivered, and a 503 now would have the shipper send
        // them again: this part is tried again for up to otlp.timeout_ms (a next hop
        // restarting) before the shipper hears of it.
        const until = performance.now() + this.cfg.timeout_ms;
        for (let wait = PART_RETRY_FIRST_MS; r !== undefined && performance.now() + wait < until; wait = Math.min(wait * 2, PART_RETRY_MAX_MS)) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          r = await this.sendRange(enc, lo, hi, acc);
        }
      }
      if (r !== undefined) return r;
      delivered = true;
    }
    return Object.assign({ ok: true as const }, acc);
  }

  /** Sends records [lo, hi); undefined when done, else the unavailable result. */
  private async sendRange(enc: EncodedLogsRequest, lo: number, hi: number, acc: { rejected: number; errorMessage: string; requests: number }): Promise<OtlpSendResult | undefined> {
    if (hi <= lo) return undefined;
    const res = await this.post(enc.bytes(lo, hi));
    acc.requests++;
    if (res.kind === "ok") {
      acc.rejected += res.rejected;
      if (res.errorMessage && !acc.errorMessage) acc.errorMessage = res.errorMessage;
      return undefined;
    }
    if (res.kind === "unavailable") return { ok: false, ...(res.status !== undefined ? { status: res.status } : {}), detail: res.detail };
    // A permanent refusal (413 included): find the records it is about.
    if (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      return (await this.sendRange(enc, lo, mid, acc)) ?? (await this.sendRange(enc, mid, hi, acc));
    }
    acc.rejected += 1;
    if (!acc.errorMessage) acc.errorMessage = `next hop refused a log record with ${res.status}: ${res.detail}`;
    this.deps.logger.error({ status: res.status, detail: res.detail }, "otlp next hop refused a log record (permanent error); it is reported rejected to the shipper");
    return undefined;
  }

  private async post(bytes: Buffer): Promise<{ kind: "ok"; rejected: number; errorMessage: string } | { kind: "unavailable"; status?: number; detail: string } | { kind: "refused"; status: number; detail: string }> {
    const release = await this.gate.acquire();
    try {
      const first = await this.postOnce(bytes);
      // A kept-alive connection the next hop closed while it was idle fails at once on
      // reuse (EPIPE, ECONNRESET, "other side closed"): sent again once, on a new connection.
      if (first.kind === "unavailable" && first.status === undefined && first.stale) return await this.postOnce(bytes);
      return first;
    } finally {
      release();
    }
  }

  private async postOnce(bytes: Buffer): Promise<{ kind: "ok"; rejected: number; errorMessage: string } | { kind: "unavailable"; status?: number; detail: string; stale?: boolean } | { kind: "refused"; status: number; detail: string }> {
    const body = this.cfg.compression === "gzip" ? await gzipAsync(bytes) : bytes;
    let status: number;
    let answer: Buffer;
    try {
      const res = await request(this.url, { method: "POST", headers: this.headers, body, dispatcher: this.dispatcher, signal: AbortSignal.timeout(this.cfg.timeout_ms) });
      status = res.statusCode;
      answer = Buffer.from(await res.body.arrayBuffer());
    } catch (e) {
      const err = e as { code?: string; name?: string };
      const timedOut = err.name === "TimeoutError" || err.code === "UND_ERR_HEADERS_TIMEOUT" || err.code === "UND_ERR_BODY_TIMEOUT";
      const stale = err.code === "EPIPE" || err.code === "ECONNRESET" || err.code === "UND_ERR_SOCKET";
      return { kind: "unavailable", stale, detail: timedOut ? `next hop did not answer within ${this.cfg.timeout_ms} ms` : `next hop unreachable (${err.code ?? err.name ?? "error"})` };
    }
    const detail = answer.subarray(0, DETAIL_MAX).toString("utf8").replace(/[^\x20-\x7e]+/g, " ").trim();
    if (status >= 200 && status < 300) {
      const parsed = answer.length > 0 ? decodeLogsResponse(answer) : undefined;
      const ps = parsed?.partialSuccess;
      const rejected = ps?.rejectedLogRecords !== undefined && ps.rejectedLogRecords !== null ? Number(int64Value(ps.rejectedLogRecords)) : 0;
      return { kind: "ok", rejected: Number.isFinite(rejected) ? rejected : 0, errorMessage: ps?.errorMessage ?? "" };
    }
    if (status === 413) return { kind: "refused", status, detail };
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) return { kind: "refused", status, detail };
    return { kind: "unavailable", status, detail: `next hop answered ${status}${detail ? `: ${detail}` : ""}` };
  }

  async close(): Promise<void> {
    if (!this.deps.dispatcher) await this.dispatcher.close();
  }
}
