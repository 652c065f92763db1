/** Starts dnsgeo's transports on port 0 with a real app (offline data, no SQLite) for transport tests. */
import { readFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../../../src/app.js";
import { loadConfig, type ConfigInput } from "../../../src/config.js";
import { startServe, type ServeHandle } from "../../../src/cli/serve.js";

export const FIXTURES = new URL("../../fixtures/", import.meta.url);

/** The Route 53 sample records, one JSON text each. */
export const ROUTE53_LINES: string[] = readFileSync(new URL("inputs/route53.ndjson", FIXTURES), "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "");

export interface Harness {
  app: App;
  serve: ServeHandle;
  /** http(s)://host:port */
  httpUrl: string;
  grpcAddress: string;
  close(): Promise<void>;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = Object.assign({}, a);
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Starts HTTP and gRPC on 127.0.0.1:0 with `overrides` on top of test defaults. */
export async function startHarness(overrides: ConfigInput = {}): Promise<Harness> {
  const base: ConfigInput = {
    data_dir: mkdtempSync(join(tmpdir(), "dnsgeo-transport-")),
    // The loop-turn guard reads wall-clock time; on a busy CI machine it could refuse a request a test expects served.
    http: { port: 0, overload_turn_ms: 0 },
    grpc: { port: 0 },
    cache: { sqlite: { enabled: false } },
    ipapi: { enabled: false },
    shutdown: { timeout_ms: 5000 },
  };
  const config = loadConfig({ overrides: deepMerge(base, overrides) });
  const app = await createApp(config);
  const serve = await startServe(app);
  const scheme = config.http.tls.cert_file ? "https" : "http";
  return {
    app,
    serve,
    httpUrl: `${scheme}://${serve.httpAddress ?? ""}`,
    grpcAddress: serve.grpcAddress ?? "",
    close: () => serve.close(),
  };
}

/**
 * A zstd frame made of raw (stored) blocks: valid zstd that any decoder reads, so
 * tests can send zstd on a Node without a zstd compressor.
 */
export function zstdStored(data: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])]; // magic; descriptor 0; window 2^17
  const max = 128 * 1024;
  let off = 0;
  do {
    const n = Math.min(max, data.length - off);
    const last = off + n >= data.length ? 1 : 0;
    const h = (n << 3) | last; // block type 0 = raw
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]), data.subarray(off, off + n));
    off += n;
  } while (off < data.length);
  return Buffer.concat(parts);
}
