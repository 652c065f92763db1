/**
 * Load generator for bench/serve.ts, run as a child process (fork with IPC) so the
 * server under test has its event loop to itself. Receives one task per message,
 * answers with the units done or the latencies seen.
 */
import * as grpc from "@grpc/grpc-js";
import { Pool } from "undici";
import { loadEnrichmentDefinition } from "../src/transport/grpc-server.js";
import { percentile } from "./measure.js";
import { batches } from "./pipeline.js";

export type LoadTarget = "echo" | "http" | "grpc-unary" | "grpc-stream";

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
      const res = await pool.request({ path, method: "POST", body: bodies[i++ % bodies.length] as Buffer, headers: { "content-type": "application/x-ndjson" } });
      await res.body.arrayBuffer();
      return res.statusCode === 200;
    };
    return { senders: Array.from({ length: concurrency }, () => send), close: () => pool.close() };
  }
  const def = loadEnrichmentDefinition();
  const pkg = grpc.loadPackageDefinition(def) as unknown as { dnsgeo: { v1: { Enrichment: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const client = new pkg.dnsgeo.v1.Enrichment(setup.grpcAddress, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  if (target === "grpc-unary") {
    const send: Sender = () =>
      new Promise((resolve) => client.Enrich({ records: lines[i++ % lines.length] }, (e: grpc.ServiceError | null) => resolve(e === null)));
    return { senders: Array.from({ length: concurrency }, () => send), close: async () => client.close() };
  }
  const calls: Array<grpc.ClientDuplexStream<unknown, unknown>> = [];
  const senders = Array.from({ length: concurrency }, (): Sender => {
    const call = client.EnrichStream() as grpc.ClientDuplexStream<unknown, unknown>;
    calls.push(call);
    const waiting: Array<(ok: boolean) => void> = [];
    call.on("data", () => waiting.shift()?.(true));
    call.on("error", () => {
      for (const w of waiting.splice(0)) w(false);
    });
    return () =>
      new Promise((resolve) => {
        waiting.push(resolve);
        call.write({ records: lines[i++ % lines.length] });
      });
  });
  return {
    senders,
    close: async () => {
      for (const c of calls) c.end();
      client.close();
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
