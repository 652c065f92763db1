/**
 * The abuse suite: each attack of issue 15's table against the built server (`dnsgeo
 * serve` as a child process, bearer token set, offline data) while a well-behaved
 * shipper sends batches beside it. Per attack: the shipper's records sent and
 * acknowledged, its p99, the server's peak RSS, /livez answered throughout (probed from a
 * process of its own) and its p99. Asserted: nothing lost, the process alive, peak RSS
 * under 1 GB, every /livez probe answered (within 2 s; 5 s at npm test's scale); the latency goals (/livez p99 <
 * 100 ms, shipper p99 < 1 s) are reported in the table, not asserted (a shared 2-core
 * machine moves them). `DNSGEO_ABUSE_SCALE=full` (npm run test:abuse) runs the issue's
 * counts and writes the table to $TMPDIR/dnsgeo-abuse-full.md.
 */
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { quantile, runShipper } from "../helpers/shipper.js";
import { freePort } from "../helpers/ports.js";
import * as attacks from "./attacks.js";
import { addRow, CAN_SAMPLE_RSS, FULL, readLoop, startProber, startServer, TOKEN, writeTable } from "./server.js";

const SHIPPER = FULL ? { records: 20_000, batchSize: 100, concurrency: 4 } : { records: 1_500, batchSize: 100, concurrency: 4 };
/**
 * A /livez probe not answered within this counts as failed. npm test runs on machines
 * shared with other work, so its bound is looser; either catches the stalls the issue
 * reported (over 10 s).
 */
const PROBE_TIMEOUT_MS = FULL ? 2_000 : 5_000;
/** How long an attack runs before the shipper starts, so it is in full force. */
const WARMUP_MS = FULL ? 5_000 : 1_000;

const NOTE = `Shipper: ${SHIPPER.records} records in batches of ${SHIPPER.batchSize}, ${SHIPPER.concurrency} in flight, from 127.0.0.1; attackers from 127.0.0.2. Default limits unless the row says otherwise.`;

interface Row {
  name: string;
  /** Overrides WARMUP_MS. */
  warmupMs?: number;
  env?: Record<string, string>;
  /** Turns the Fluent forward listener on, its next hop a server that reads and never acks. */
  fluent?: boolean;
  start(t: attacks.Target): attacks.Attack;
  /** Extra checks once the row ran; returns a note for the table. */
  assess?(a: attacks.Attack, logLines: string[]): string | void;
}

const ROWS: Row[] = [
  {
    name: "1 gRPC: unread EnrichStream of 130 KB requests + unread unary calls on one connection",
    start: (t) => attacks.grpcUnread(t, FULL ? 2000 : 200, FULL ? 1500 : 150),
  },
  {
    name: "2 gRPC health Watch streams, no token",
    start: (t) => attacks.watchFlood(t, FULL ? 100_000 : 2_000, 30),
    warmupMs: FULL ? 30_000 : undefined,
  },
  {
    name: "3 slow bodies: one byte every 2 s",
    // npm test: bodies cut after 2 s, so the row sees the 408s in its few seconds.
    env: FULL ? {} : { DNSGEO_HTTP_BODY_TIMEOUT_MS: "2000" },
    start: (t) => attacks.slowBodies(t, 70, 2000),
    // Past the default http.body_timeout_ms (30 s), so the full run sees the 408s too.
    warmupMs: FULL ? 32_000 : 2_500,
  },
  {
    name: "4 idle TCP connections on both ports, never a byte",
    env: FULL ? {} : { DNSGEO_HTTP_FIRST_BYTE_TIMEOUT_MS: "1000", DNSGEO_GRPC_FIRST_BYTE_TIMEOUT_MS: "1000" },
    // The attacker process's open-file limit (inherited from the test process) bounds the count (20 000 here).
    start: (t) => attacks.idleConnections(t, FULL ? 18_000 : 1_500),
  },
  {
    name: "5 large batches (gzip) whose answers are never read",
    env: FULL ? {} : { DNSGEO_HTTP_SEND_TIMEOUT_MS: "3000" },
    start: (t) => attacks.unreadBigAnswers(t, FULL ? 24 : 3, FULL ? 89_400 : 20_000),
  },
  {
    name: "6 malformed protobuf",
    start: (t) => attacks.malformedProtobuf(t),
    assess: (a) => {
      const st = (a as unknown as { statuses: Record<string, number> }).statuses;
      // Every malformed message: INVALID_ARGUMENT (3), never INTERNAL (13) or OK (0).
      expect(Object.keys(st)).toEqual(["3"]);
    },
  },
  {
    name: "7 unauthenticated loop with a 12 KB Content-Encoding",
    start: (t) => attacks.unauthenticatedLoop(t),
    assess: (a, logs) => {
      const n = (a as ReturnType<typeof attacks.unauthenticatedLoop>).sent();
      const refusals = logs.filter((l) => l.includes("request refused")).length;
      const longest = Math.max(...logs.map((l) => l.length));
      expect(n).toBeGreaterThan(100);
      // One line per code per 10 s window (and a little slack for the window edges).
      expect(refusals).toBeLessThan(10);
      expect(longest).toBeLessThan(2000);
      return `${refusals} log lines for the refusals, longest log line ${longest} B`;
    },
  },
  {
    name: "8 records with their own dnsgeo / destination",
    start: (t) => attacks.ownFields(t),
    assess: (a) => {
      expect((a as ReturnType<typeof attacks.ownFields>).violations()).toBe(0);
    },
  },
  {
    name: "9 Fluent forward port: idle connections, half-sent 15 MB messages, messages never acked",
    fluent: true,
    env: FULL ? {} : { DNSGEO_FLUENT_FIRST_BYTE_TIMEOUT_MS: "1000" },
    start: (t) => attacks.fluentFlood(t, FULL ? 6_000 : 500, FULL ? 600 : 200, 1, 100),
  },
];

describe.skipIf(!CAN_SAMPLE_RSS)("abuse suite (the built server under each attack of issue 15, with a shipper beside it)", { timeout: FULL ? 900_000 : 120_000 }, () => {
  afterAll(() => {
    const file = writeTable(NOTE);
    console.log(`${readFileSync(file, "utf8")}\n(written to ${file})`);
  });

  for (const row of ROWS) {
    it(row.name, async () => {
      // Prepare
      const env = { ...row.env };
      let hop: net.Server | undefined;
      if (row.fluent) {
        const silent = net.createServer((s) => {
          s.on("error", () => undefined);
          s.resume();
        });
        hop = silent;
        await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
        env.DNSGEO_FLUENT_LISTEN = `127.0.0.1:${await freePort()}`;
        env.DNSGEO_FLUENT_NEXT_HOP = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      }
      const server = await startServer(env);
      // Warm-up (first requests compile the hot paths), so the probes measure the attack, not start-up.
      await runShipper({ target: server.http, records: 300, batchSize: 100, concurrency: 2, headers: { authorization: `Bearer ${TOKEN}` }, idPrefix: "warm" });
      const loopBefore = await readLoop(server.http);
      const prober = startProber(server.http, PROBE_TIMEOUT_MS);
      let attack: attacks.Attack | undefined;
      try {
        const running = row.start(Object.assign({ http: server.http, grpc: server.grpc }, env.DNSGEO_FLUENT_LISTEN ? { fluent: env.DNSGEO_FLUENT_LISTEN } : {}));
        attack = running;
        await new Promise((r) => setTimeout(r, row.warmupMs ?? WARMUP_MS));
        // Act
        const r = await runShipper({
          target: server.http,
          records: SHIPPER.records,
          batchSize: SHIPPER.batchSize,
          concurrency: SHIPPER.concurrency,
          headers: { authorization: `Bearer ${TOKEN}` },
          giveUpMs: FULL ? 60_000 : 30_000,
          requestTimeoutMs: 10_000,
          maxBackoffMs: 1000,
          idPrefix: `abuse${row.name.slice(0, 1)}`,
        });
        const loopAfter = await readLoop(server.http);
        const notes = await attack.stop();
        attack = undefined;
        await prober.stop();
        const extra = row.assess?.(running, server.logLines());
        const alive = server.alive();
        addRow({
          attack: row.name,
          sent: r.sent,
          acknowledged: r.acknowledged,
          lost: r.sent - r.acknowledged,
          shipperP99: quantile(r.latenciesMs, 0.99),
          peakRssMiB: server.peakRssMiB(),
          livezP99: quantile(prober.latencies, 0.99),
          livezFailures: prober.failures(),
          livezProbes: prober.latencies.length,
          loop: {
            p99: loopAfter.delayP99Ms,
            max: loopAfter.delayMaxMs,
            majorGcs: loopAfter.majorGcs - loopBefore.majorGcs,
            slowGcs: loopAfter.majorGcsOver100ms - loopBefore.majorGcsOver100ms,
          },
          alive,
          notes: extra ? `${notes}; ${extra}` : notes,
        });
        writeTable(NOTE);
        // Assess
        expect(r.acknowledged).toBe(r.sent);
        expect(r.mismatches).toBe(0);
        expect(alive).toBe(true);
        expect(server.peakRssMiB()).toBeLessThan(1024);
        expect(prober.failures()).toBe(0);
      } finally {
        await attack?.stop();
        await prober.stop();
        await server.stop();
        hop?.close();
      }
    });
  }
});
