/**
 * The ip-api.com provider: `POST {base}/batch?fields=…&lang=…[&key=…]` with a
 * JSON array of at most `batchSize` IPs (docs/caching.md, "ip-api limits"). It only
 * speaks HTTP and parses; the budget lives in rate-limiter.ts and the
 * batching, coalescing and deadlines in geo-service.ts.
 */
import { Agent, type Dispatcher, request } from "undici";
import type { Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Clock, Entry, GeoInfo, GetOptions, Lookup } from "./lookup.js";
import { nowS, systemClock } from "./lookup.js";
import type { SendFailure } from "./rate-limiter.js";

/** Free endpoint (HTTP only). */
export const IPAPI_FREE_URL = "http://ip-api.com";
/** Pro endpoint, used when a key is set. */
export const IPAPI_PRO_URL = "https://pro.ip-api.com";

/** A failed provider call; `kind` drives the limiter (a `connect` failure is refunded). */
export class ProviderError extends Error {
  readonly code: string;
  constructor(
    readonly kind: SendFailure,
    message: string,
    /** HTTP status when an answer arrived (unreadable body), else 0. */
    readonly status = 0,
    readonly rl?: number,
    readonly ttl?: number,
  ) {
    super(message);
    this.name = "ProviderError";
    this.code = `DNSGEO_PROVIDER_${kind.toUpperCase()}`;
  }
}

/** What one `POST /batch` produced. Non-200 answers carry no entries. */
export interface BatchResult {
  entries: Entry[];
  status: number;
  /** `X-Rl` header. */
  rl?: number;
  /** `X-Ttl` header, seconds. */
  ttl?: number;
}

export interface IpApiProviderOptions {
  /** Base URL; default the free endpoint, or the pro one with `key`. */
  url?: string;
  /** Pro key, sent as `?key=`; never logged. */
  key?: string;
  /** ip-api `fields` query parameter. */
  fields: string;
  /** ip-api `lang` query parameter. */
  lang: string;
  /** Most IPs per request (≤ 100). */
  batchSize: number;
  /** Connect, headers and body timeouts of the default agent, milliseconds. */
  timeoutMs: number;
  /** Positive entries stay fresh this long, seconds. */
  ttlS: number;
  /** Fail answers stay cached this long, seconds. */
  negativeTtlS: number;
  /** HTTP dispatcher; default a keep-alive Agent owned (and closed) by the provider. */
  dispatcher?: Dispatcher;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
}

/** Provider options from the frozen config. */
export function ipApiOptionsFromConfig(cfg: Config): IpApiProviderOptions {
  const o: IpApiProviderOptions = {
    fields: cfg.ipapi.fields,
    lang: cfg.ipapi.lang,
    batchSize: cfg.ipapi.batch_size,
    timeoutMs: cfg.ipapi.timeout_ms,
    ttlS: cfg.cache.ttl_s,
    negativeTtlS: cfg.cache.negative_ttl_s,
  };
  if (cfg.ipapi.url !== undefined) o.url = cfg.ipapi.url;
  if (cfg.ipapi.key !== undefined) o.key = cfg.ipapi.key;
  return o;
}

const PROVIDER = "ipapi";
const CONNECT_CODES = new Set(["ECONNREFUSED", "UND_ERR_CONNECT_TIMEOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);
const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ETIMEDOUT", "ABORT_ERR"]);

function errCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur && typeof cur === "object"; i++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === "string") return c;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function headerNumber(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

function text(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/**
 * One ip-api answer object → GeoInfo. Empty strings become absent fields;
 * `as` "AS15169 Google LLC" → asn 15169 + asOrg "Google LLC".
 */
export function geoFromIpApi(ip: string, o: Record<string, unknown>, fetchedAt: number): GeoInfo {
  const g: GeoInfo = { ip, source: "ip-api", fetchedAt };
  let s: string | undefined;
  if ((s = text(o.countryCode)) !== undefined) g.countryCode = s;
  if ((s = text(o.country)) !== undefined) g.country = s;
  if ((s = text(o.region)) !== undefined) g.regionCode = s;
  if ((s = text(o.regionName)) !== undefined) g.regionName = s;
  if ((s = text(o.city)) !== undefined) g.city = s;
  if ((s = text(o.zip)) !== undefined) g.postalCode = s;
  if (typeof o.lat === "number" && Number.isFinite(o.lat)) g.lat = o.lat;
  if (typeof o.lon === "number" && Number.isFinite(o.lon)) g.lon = o.lon;
  if ((s = text(o.timezone)) !== undefined) g.timezone = s;
  if ((s = text(o.continentCode)) !== undefined) g.continentCode = s;
  if ((s = text(o.isp)) !== undefined) g.isp = s;
  if ((s = text(o.org)) !== undefined) g.org = s;
  if ((s = text(o.as)) !== undefined) {
    const m = /^AS(\d+)(?:\s+(.*))?$/i.exec(s.trim());
    if (m) {
      g.asn = Number(m[1]);
      const org = m[2]?.trim();
      if (org) g.asOrg = org;
    } else g.asOrg = s;
  }
  return g;
}

/** ip-api over undici. As a `Lookup` it answers `get` by asking the provider (no budget check: callers own that); `set` is a no-op. */
export class IpApiProvider implements Lookup {
  readonly name = PROVIDER;
  /** Base URL without key, safe to log. */
  readonly baseUrl: string;
  /** Full request URL; holds the key, so it is never logged. */
  private readonly endpoint: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly clock: Clock;
  private closed = false;

  constructor(private readonly opts: IpApiProviderOptions) {
    const base = opts.url ?? (opts.key ? IPAPI_PRO_URL : IPAPI_FREE_URL);
    const u = new URL(base);
    this.baseUrl = u.origin + u.pathname.replace(/\/+$/, "");
    const q = new URLSearchParams({ fields: opts.fields, lang: opts.lang });
    if (opts.key) q.set("key", opts.key);
    this.endpoint = `${this.baseUrl}/batch?${q.toString()}`;
    this.clock = opts.clock ?? systemClock;
    this.ownsDispatcher = opts.dispatcher === undefined;
    this.dispatcher =
      opts.dispatcher ??
      new Agent({
        connect: { timeout: opts.timeoutMs },
        connectTimeout: opts.timeoutMs,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        keepAliveTimeout: 30_000,
        // At least provider-pump.ts MAX_IN_FLIGHT, so no started request waits in the pool.
        connections: 4,
      });
  }

  /**
   * Sends one batch (≤ `batchSize` IPs, in order). A 200 answer becomes one entry
   * per IP (fail answers → negative entries); any other HTTP status comes back
   * with no entries for the limiter to read. Rejects with ProviderError on
   * connect failures, timeouts and unreadable bodies.
   */
  async fetchBatch(ips: readonly string[], signal?: AbortSignal): Promise<BatchResult> {
    if (ips.length === 0) return { entries: [], status: 200 };
    if (ips.length > this.opts.batchSize) throw new RangeError(`batch of ${ips.length} IPs exceeds batch_size ${this.opts.batchSize}`);
    const m = this.opts.metrics;
    m?.providerIps.inc({ provider: PROVIDER }, ips.length);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.endpoint, {
        dispatcher: this.dispatcher,
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(ips),
        signal,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
      });
    } catch (e) {
      throw this.failure(e);
    }
    const rl = headerNumber(res.headers["x-rl"]);
    const ttl = headerNumber(res.headers["x-ttl"]);
    let raw: string;
    try {
      raw = await res.body.text();
    } catch (e) {
      throw this.failure(e, res.statusCode, rl, ttl);
    }
    m?.providerRequests.inc({ provider: PROVIDER, code: String(res.statusCode) });
    if (res.statusCode !== 200) {
      const out: BatchResult = { entries: [], status: res.statusCode };
      if (rl !== undefined) out.rl = rl;
      if (ttl !== undefined) out.ttl = ttl;
      return out;
    }
    const entries = this.parse(ips, raw);
    if (!entries) {
      m?.lookups.inc({ tier: PROVIDER, outcome: "error" }, ips.length);
      this.opts.logger?.warn({ provider: PROVIDER, url: this.baseUrl, bytes: raw.length }, "ip-api answered 200 with a body that is not the expected JSON array");
      throw new ProviderError("body", "ip-api answer is not a JSON array of one object per IP", res.statusCode, rl, ttl);
    }
    const out: BatchResult = { entries, status: 200 };
    if (rl !== undefined) out.rl = rl;
    if (ttl !== undefined) out.ttl = ttl;
    return out;
  }

  /** Looks the IPs up in batches, ignoring the rate limit (for ad-hoc use; the service goes through the limiter). */
  async get(ips: readonly string[], opts?: GetOptions): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    for (let i = 0; i < ips.length; i += this.opts.batchSize) {
      const r = await this.fetchBatch(ips.slice(i, i + this.opts.batchSize), opts?.signal);
      for (const e of r.entries) out.set(e.ip, e);
    }
    return out;
  }

  set(): void {
    // A provider is read-only.
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsDispatcher) await this.dispatcher.close().catch(() => undefined);
  }

  private parse(ips: readonly string[], raw: string): Entry[] | undefined {
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return undefined;
    }
    if (!Array.isArray(body) || body.length !== ips.length) return undefined;
    const now = nowS(this.clock);
    const entries: Entry[] = [];
    let hits = 0;
    for (let i = 0; i < ips.length; i++) {
      const o: unknown = body[i];
      if (!o || typeof o !== "object" || Array.isArray(o)) return undefined;
      const rec = o as Record<string, unknown>;
      // Order is the key: `query` may be missing when `fields` leaves it out.
      const ip = ips[i] as string;
      if (rec.status === "fail") {
        entries.push({ ip, neg: true, src: "ip-api", fetchedAt: now, expiresAt: now + this.opts.negativeTtlS });
      } else if (rec.status === "success" || rec.status === undefined) {
        entries.push({ ip, geo: geoFromIpApi(ip, rec, now), src: "ip-api", fetchedAt: now, expiresAt: now + this.opts.ttlS });
        hits++;
      } else return undefined;
    }
    const m = this.opts.metrics;
    if (m) {
      if (hits > 0) m.lookups.inc({ tier: PROVIDER, outcome: "hit" }, hits);
      if (hits < ips.length) m.lookups.inc({ tier: PROVIDER, outcome: "miss" }, ips.length - hits);
    }
    return entries;
  }

  private failure(e: unknown, status = 0, rl?: number, ttl?: number): ProviderError {
    const code = errCode(e);
    const name = e instanceof Error ? e.name : "";
    let kind: SendFailure;
    if (code !== undefined && CONNECT_CODES.has(code)) kind = "connect";
    else if ((code !== undefined && TIMEOUT_CODES.has(code)) || name === "AbortError" || name === "TimeoutError") kind = "timeout";
    else kind = "network";
    this.opts.metrics?.providerRequests.inc({ provider: PROVIDER, code: kind === "timeout" ? "timeout" : "error" });
    const msg = e instanceof Error ? e.message : String(e);
    this.opts.logger?.debug({ provider: PROVIDER, url: this.baseUrl, kind, code }, "ip-api request failed");
    return new ProviderError(kind, `ip-api request failed (${code ?? name ?? kind}): ${msg}`, status, rl, ttl);
  }
}
