/**
 * A local stand-in for ip-api.com: `POST /batch` and `GET /json/{ip}` on
 * 127.0.0.1, port 0. Answers are derived from the IP (same IP, same answer),
 * limits are enforced like the real service (`X-Rl`/`X-Ttl` on every answer,
 * 429 past the budget, optional 403 ban after repeated 429s), and it can be
 * slowed, broken or made to hang. It counts what it received so tests can
 * assert that dnsgeo stayed within the rules.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import ipaddr from "ipaddr.js";
import { classifyIp } from "../../src/pipeline/classify.js";

/** normal | slow (delay then answer) | 500 | garbage (200, not JSON) | hang (never answers) | refuse (port closed) | 429 | banned (403). */
export type FakeMode = "normal" | "slow" | "500" | "garbage" | "hang" | "refuse" | "429" | "banned";

export interface FakeIpApiOptions {
  /** Batch requests accepted per window. Default 15. */
  batchPerWindow?: number;
  /** `GET /json` requests accepted per window. Default 45. */
  jsonPerWindow?: number;
  /** Window length, milliseconds. Default 60 000. */
  windowMs?: number;
  /** Public IPs answered with `{status:"fail", message:"invalid query"}`. */
  failIps?: Iterable<string>;
  /** Switch to banned mode after this many 429s (off when unset). */
  banAfter429s?: number;
  /** Delay for `slow` mode, milliseconds. */
  delayMs?: number;
}

export interface FakeIpApiCounts {
  /** HTTP requests received (batch + json), in any mode. */
  requests: number;
  batchRequests: number;
  jsonRequests: number;
  /** IPs received in batch and json requests. */
  ips: number;
  /** IPs received that had been received before (in any earlier or the same request). */
  duplicateIps: number;
  /** 429 answers given. */
  status429: number;
  /** IPs received that are special-purpose (should never be sent). */
  specialIps: number;
  /** Most accepted batch requests in one of the fake's windows. */
  peakBatchPerWindow: number;
  /** Most batch requests received in any sliding span of `windowMs` (stricter than the fixed-window peak). */
  peakBatchSliding: number;
}

export interface FakeIpApi {
  /** Base URL, e.g. `http://127.0.0.1:12345`. */
  readonly url: string;
  readonly port: number;
  readonly counts: FakeIpApiCounts;
  /** Every IP received in a batch, with how often. */
  readonly seen: Map<string, number>;
  /** Receive times (ms) of every batch request. */
  readonly batchTimes: number[];
  /** Query string of the last request (fields, lang, key). */
  readonly lastQuery: URLSearchParams | undefined;
  /** Switches mode; `refuse` closes the listener, leaving `refuse` reopens it on the same port. */
  setMode(mode: FakeMode, opts?: { delayMs?: number }): Promise<void>;
  readonly mode: FakeMode;
  /** The answer the fake gives for an IP in normal mode (fields unfiltered). */
  answerFor(ip: string): Record<string, unknown>;
  close(): Promise<void>;
}

const COUNTRIES: ReadonlyArray<readonly [string, string, string, string, string, string, string, number, number]> = [
  ["US", "United States", "NA", "CA", "California", "Mountain View", "America/Los_Angeles", 37.4, -122.1],
  ["DE", "Germany", "EU", "HE", "Hesse", "Frankfurt am Main", "Europe/Berlin", 50.1, 8.7],
  ["JP", "Japan", "AS", "13", "Tokyo", "Tokyo", "Asia/Tokyo", 35.7, 139.7],
  ["BR", "Brazil", "SA", "SP", "Sao Paulo", "São Paulo", "America/Sao_Paulo", -23.5, -46.6],
  ["AU", "Australia", "OC", "NSW", "New South Wales", "Sydney", "Australia/Sydney", -33.9, 151.2],
  ["ZA", "South Africa", "AF", "GP", "Gauteng", "Johannesburg", "Africa/Johannesburg", -26.2, 28.0],
  ["FR", "France", "EU", "IDF", "Île-de-France", "Paris", "Europe/Paris", 48.9, 2.4],
  ["IN", "India", "AS", "MH", "Maharashtra", "Mumbai", "Asia/Kolkata", 19.1, 72.9],
];

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** `private range` / `reserved range` like ip-api, or undefined for a public IP. */
function specialMessage(ip: string): string | undefined {
  if (!ipaddr.isValid(ip)) return "invalid query";
  const r = ipaddr.parse(ip).range();
  if (r === "unicast") return undefined;
  return r === "private" || r === "uniqueLocal" || r === "carrierGradeNat" || r === "linkLocal" ? "private range" : "reserved range";
}

function isSpecial(ip: string): boolean {
  const c = classifyIp(ip);
  if (c) return c.class !== "public";
  return specialMessage(ip) !== undefined;
}

/** The deterministic ip-api-shaped answer for an IP. */
export function fakeAnswer(ip: string, failIps?: ReadonlySet<string>): Record<string, unknown> {
  const special = specialMessage(ip);
  if (special) return { status: "fail", message: special, query: ip };
  if (failIps?.has(ip)) return { status: "fail", message: "invalid query", query: ip };
  const h = fnv1a(ip);
  const c = COUNTRIES[h % COUNTRIES.length] as (typeof COUNTRIES)[number];
  const asn = 1000 + (h % 60000);
  return {
    status: "success",
    continentCode: c[2],
    country: c[1],
    countryCode: c[0],
    region: c[3],
    regionName: c[4],
    city: c[5],
    // Some answers carry an empty zip, as the real service does.
    zip: h % 5 === 0 ? "" : String(10000 + (h % 89999)),
    lat: Math.round((c[7] + ((h >>> 8) % 100) / 100) * 10000) / 10000,
    lon: Math.round((c[8] + ((h >>> 16) % 100) / 100) * 10000) / 10000,
    timezone: c[6],
    isp: `ISP ${h % 997}`,
    org: h % 3 === 0 ? "" : `Org ${h % 991}`,
    as: `AS${asn} Network ${asn} Ltd`,
    query: ip,
  };
}

function pick(answer: Record<string, unknown>, fields: string | null): Record<string, unknown> {
  if (!fields || /^\d+$/.test(fields)) return answer;
  const out: Record<string, unknown> = {};
  for (const f of fields.split(",")) if (f in answer) out[f] = answer[f];
  return out;
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeIpApi(opts: FakeIpApiOptions = {}): Promise<FakeIpApi> {
  const windowMs = opts.windowMs ?? 60_000;
  const batchMax = opts.batchPerWindow ?? 15;
  const jsonMax = opts.jsonPerWindow ?? 45;
  const failIps = new Set(opts.failIps ?? []);
  let mode: FakeMode = "normal";
  let delayMs = opts.delayMs ?? 200;
  const counts: FakeIpApiCounts = {
    requests: 0,
    batchRequests: 0,
    jsonRequests: 0,
    ips: 0,
    duplicateIps: 0,
    status429: 0,
    specialIps: 0,
    peakBatchPerWindow: 0,
    peakBatchSliding: 0,
  };
  const seen = new Map<string, number>();
  const batchTimes: number[] = [];
  let lastQuery: URLSearchParams | undefined;
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  // One fixed window per endpoint, starting at the first request after the previous one ended.
  const windows = { batch: { start: 0, count: 0 }, json: { start: 0, count: 0 } };

  const limit = (which: "batch" | "json", max: number, res: ServerResponse): boolean => {
    const now = Date.now();
    const w = windows[which];
    if (now >= w.start + windowMs) {
      w.start = now;
      w.count = 0;
    }
    const ttl = Math.max(1, Math.ceil((w.start + windowMs - now) / 1000));
    if (w.count >= max) {
      res.setHeader("X-Rl", "0");
      res.setHeader("X-Ttl", String(ttl));
      counts.status429++;
      if (opts.banAfter429s !== undefined && counts.status429 >= opts.banAfter429s) mode = "banned";
      res.writeHead(429, { "content-type": "text/plain" }).end("too many requests");
      return false;
    }
    w.count++;
    if (which === "batch" && w.count > counts.peakBatchPerWindow) counts.peakBatchPerWindow = w.count;
    res.setHeader("X-Rl", String(max - w.count));
    res.setHeader("X-Ttl", String(ttl));
    return true;
  };

  const record = (ips: string[]): void => {
    for (const ip of ips) {
      counts.ips++;
      const n = seen.get(ip) ?? 0;
      if (n > 0) counts.duplicateIps++;
      seen.set(ip, n + 1);
      if (isSpecial(ip)) counts.specialIps++;
    }
  };

  const answer = (res: ServerResponse, body: unknown): void => {
    const send = (): void => {
      if (mode === "garbage") {
        res.writeHead(200, { "content-type": "application/json" }).end("<html>not json</html>");
      } else if (mode === "500") {
        res.writeHead(500, { "content-type": "text/plain" }).end("internal error");
      } else {
        res.writeHead(200, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
      }
    };
    if (mode === "slow") setTimeout(send, delayMs).unref();
    else send();
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    counts.requests++;
    const u = new URL(req.url ?? "/", "http://fake");
    lastQuery = u.searchParams;
    if (mode === "hang") {
      hung.add(res);
      return;
    }
    if (mode === "banned") {
      res.writeHead(403, { "content-type": "text/plain" }).end("banned");
      return;
    }
    if (req.method === "POST" && u.pathname === "/batch") {
      counts.batchRequests++;
      const now = Date.now();
      batchTimes.push(now);
      let lo = 0;
      while ((batchTimes[lo] as number) <= now - windowMs) lo++;
      counts.peakBatchSliding = Math.max(counts.peakBatchSliding, batchTimes.length - lo);
      let items: unknown;
      try {
        items = JSON.parse(raw);
      } catch {
        res.writeHead(400, { "content-type": "text/plain" }).end("invalid JSON");
        return;
      }
      if (!Array.isArray(items)) {
        res.writeHead(400, { "content-type": "text/plain" }).end("expected an array");
        return;
      }
      const queries = items.map((it) => (typeof it === "string" ? it : String((it as { query?: unknown })?.query ?? "")));
      record(queries);
      if (mode === "429") {
        res.setHeader("X-Rl", "0");
        res.setHeader("X-Ttl", String(Math.ceil(windowMs / 1000)));
        counts.status429++;
        res.writeHead(429, { "content-type": "text/plain" }).end("too many requests");
        return;
      }
      if (!limit("batch", batchMax, res)) return;
      if (queries.length > 100) {
        res.writeHead(422, { "content-type": "text/plain" }).end("too many items");
        return;
      }
      const fields = u.searchParams.get("fields");
      answer(
        res,
        queries.map((q) => pick(fakeAnswer(q, failIps), fields)),
      );
      return;
    }
    const m = /^\/json\/([^/]+)$/.exec(u.pathname);
    if (req.method === "GET" && m) {
      counts.jsonRequests++;
      const ip = decodeURIComponent(m[1] as string);
      record([ip]);
      if (!limit("json", jsonMax, res)) return;
      answer(res, pick(fakeAnswer(ip, failIps), u.searchParams.get("fields")));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      for (const r of hung) r.destroy();
      hung.clear();
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });

  await listen(0);
  const port = (server.address() as AddressInfo).port;
  let closed = false;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    counts,
    seen,
    batchTimes,
    get lastQuery() {
      return lastQuery;
    },
    get mode() {
      return mode;
    },
    async setMode(next, o) {
      if (o?.delayMs !== undefined) delayMs = o.delayMs;
      if (next === mode) return;
      if (next === "refuse") await stop();
      else if (mode === "refuse") await listen(port);
      if (mode === "hang" && next !== "hang") {
        for (const r of hung) r.destroy();
        hung.clear();
      }
      mode = next;
    },
    answerFor: (ip) => fakeAnswer(ip, failIps),
    async close() {
      if (closed) return;
      closed = true;
      await stop();
    },
  };
}
