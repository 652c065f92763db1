/**
 * Load generator for bench/serve.ts, run as a child process (fork with IPC) so the
 * server under test has its event loop to itself. Receives one task per message,
 * answers with the units done or the latencies seen.
 */
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { Pool } from "undici";
import { loadEnrichmentDefinition } from "../src/transport/grpc-server.js";
import { percentile } from "./measure.js";
import { batches } from "./pipeline.js";

export type LoadTarget = "echo" | "http" | "grpc-unary" | "grpc-stream" | "grpc-js-unary";

export interface LoadTask {
  kind: "rate" | "latency";
  target: LoadTarget;
  ms: number;
  concurrency: number;
}

export interface LoadResult {
  /** Records answered 200 / OK. */
  records: number;
  elapsedMs: number;
  accepted: number;
  refused: number;
  p50Ms: number;
  p99Ms: number;
}

export interface LoadSetup {
  echoUrl: string;
  httpUrl: string;
  grpcAddress: string;
  batch: number;
  distinct: number;
}

type Sender = () => Promise<boolean>;

/** Builds one sender per concurrent client for a target; `true` means accepted. */
function makeSenders(setup: LoadSetup, target: LoadTarget, concurrency: number): { senders: Sender[]; close(): Promise<void> } {
  const bodies = batches(20_000, setup.batch, setup.distinct);
  const lines = bodies.map((b) => b.toString("utf8").trimEnd().split("\n"));
  let i = 0;
  if (target === "echo" || target === "http") {
    const pool = new Pool(target === "echo" ? setup.echoUrl : setup.httpUrl, { connections: concurrency, pipelining: 1 });
    const path = target === "echo" ? "/" : "/v1/enrich";
    const send: Sender = async () => {
      const res = await pool.request({ path, method: "POST", body: bodies[i++ % bodies.length], headers: { "content-type": "application/x-ndjson" } });
      await res.body.arrayBuffer();
      return res.statusCode === 200;
    };
    return { senders: Array.from({ length: concurrency }, () => send), close: () => pool.close() };
  }
  const def = loadEnrichmentDefinition();
  const svc = def["dnsgeo.v1.Enrichment"] as unknown as Record<string, { path: string; requestSerialize(v: unknown): Buffer }>;
  const unary = svc.Enrich as { path: string; requestSerialize(v: unknown): Buffer };
  const streamPath = (svc.EnrichStream as { path: string }).path;
  const encoded = lines.map((records) => unary.requestSerialize({ records }));
  if (target === "grpc-unary" || target === "grpc-stream") return rawGrpcSenders(setup.grpcAddress, target === "grpc-unary" ? unary.path : streamPath, target === "grpc-stream", encoded, concurrency);
  // grpc-js as the client (report only): its client costs about as much CPU per call as
  // the server does, and both share this machine's cores.
  const raw = (b: Buffer): Buffer => b;
  const client = new grpc.Client(setup.grpcAddress, grpc.credentials.createInsecure(), { "grpc-node.flow_control_window": 4 << 20 });
  const send: Sender = () =>
    new Promise((resolve) =>
      client.makeUnaryRequest(unary.path, raw, raw, encoded[i++ % encoded.length] as Buffer, (e: grpc.ServiceError | null) => resolve(e === null)),
    );
  return { senders: Array.from({ length: concurrency }, () => send), close: async () => client.close() };
}

/** A gRPC message on the wire: not compressed, 4-byte big-endian length, the protobuf bytes. */
function grpcFrame(msg: Buffer): Buffer {
  const f = Buffer.allocUnsafe(5 + msg.length);
  f[0] = 0;
  f.writeUInt32BE(msg.length, 1);
  msg.copy(f, 5);
  return f;
}

/** Counts complete gRPC messages in a response body arriving in chunks. */
class FrameCounter {
  private need = 5;
  private header = true;
  private hdr = Buffer.alloc(5);
  private hdrFill = 0;
  constructor(private readonly onMessage: () => void) {}
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.header) {
        const take = Math.min(5 - this.hdrFill, chunk.length - at);
        chunk.copy(this.hdr, this.hdrFill, at, at + take);
        this.hdrFill += take;
        at += take;
        if (this.hdrFill === 5) {
          this.header = false;
          this.need = this.hdr.readUInt32BE(1);
          this.hdrFill = 0;
        }
      } else {
        const take = Math.min(this.need, chunk.length - at);
        this.need -= take;
        at += take;
      }
      if (!this.header && this.need === 0) {
        this.header = true;
        this.onMessage();
      }
    }
  }
}

/**
 * gRPC spoken over node:http2 with pre-encoded requests, one connection per concurrent
 * caller (as the HTTP client's pool has): the load side does what h2load or ghz would,
 * framing bytes and checking `grpc-status`, so the server is what is measured — like
 * the HTTP client, which sends fixed bodies and does not parse answers.
 */
function rawGrpcSenders(address: string, path: string, streaming: boolean, encoded: Buffer[], concurrency: number): { senders: Sender[]; close(): Promise<void> } {
  const frames = encoded.map(grpcFrame);
  let i = 0;
  const sessions: http2.ClientHttp2Session[] = [];
  const streams: http2.ClientHttp2Stream[] = [];
  const headers = { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" };
  // Answers are 2–3× the request: a receive window of a few answers, not HTTP/2's 64 KiB.
  const connect = (): http2.ClientHttp2Session => {
    const s = http2.connect(`http://${address}`, { settings: { initialWindowSize: 4 << 20 } });
    s.on("connect", () => s.setLocalWindowSize(8 << 20));
    s.on("error", () => undefined);
    sessions.push(s);
    return s;
  };
  const senders = Array.from({ length: concurrency }, (): Sender => {
    const session = connect();
    if (!streaming) {
      return () =>
        new Promise((resolve) => {
          const st = session.request(headers);
          let status: unknown;
          st.on("data", () => undefined);
          st.on("trailers", (t) => (status = t["grpc-status"]));
          st.on("end", () => resolve(status === "0"));
          st.on("error", () => resolve(false));
          st.end(frames[i++ % frames.length]);
        });
    }
    const st = session.request(headers);
    streams.push(st);
    const waiting: Array<(ok: boolean) => void> = [];
    const counter = new FrameCounter(() => waiting.shift()?.(true));
    st.on("data", (c: Buffer) => counter.push(c));
    const failAll = (): void => {
      for (const w of waiting.splice(0)) w(false);
    };
    st.on("error", failAll);
    st.on("close", failAll);
    return () =>
      new Promise((resolve) => {
        waiting.push(resolve);
        st.write(frames[i++ % frames.length]);
      });
  });
  return {
    senders,
    close: async () => {
      for (const st of streams) st.end();
      await Promise.all(sessions.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

async function run(setup: LoadSetup, task: LoadTask): Promise<LoadResult> {
  const { senders, close } = makeSenders(setup, task.target, task.concurrency);
  await Promise.all(senders.map((s) => s())); // warm connections
  const lat: number[] = [];
  let refused = 0;
  const start = performance.now();
  const end = start + task.ms;
  await Promise.all(
    senders.map(async (send) => {
      while (performance.now() < end) {
        const t = performance.now();
        if (await send()) lat.push(performance.now() - t);
        else refused++;
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  await close();
  return { records: lat.length * setup.batch, elapsedMs, accepted: lat.length, refused, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99) };
}

let setup: LoadSetup | undefined;
process.on("message", (m: { setup?: LoadSetup; task?: LoadTask }) => {
  if (m.setup) {
    setup = m.setup;
    process.send?.({ ready: true });
    return;
  }
  if (m.task && setup) {
    run(setup, m.task).then(
      (r) => process.send?.({ result: r }),
      (e: unknown) => process.send?.({ error: String(e) }),
    );
  }
});
