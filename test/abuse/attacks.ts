/**
 * The attacks of issue 15's table, as a hostile client would run them. Each starts,
 * keeps going until stopped, and reports what it saw. Attackers connect from
 * 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux) and the shipper from 127.0.0.1:
 * per-address shares can only protect the shipper when the two addresses differ.
 */
import * as http2 from "node:http2";
import { spawn } from "node:child_process";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import { route53Record, publicIp } from "../helpers/shipper.js";
import { TOKEN } from "./server.js";
import { enrichRequest, grpcFrame, varint } from "../helpers/grpc-wire.js";

export const ATTACKER = "127.0.0.2";

export interface Target {
  http: string;
  grpc: string;
  /** The Fluent forward listener, host:port, when the row turns it on. */
  fluent?: string;
}

export interface Attack {
  /** Stops the attack, closes what it opened, and says what it saw. */
  stop(): Promise<string>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url.includes("://") ? url : `http://${url}`);
  return { host: u.hostname, port: Number(u.port) };
}

function connect(url: string): net.Socket {
  const s = net.connect(Object.assign(hostPort(url), { localAddress: ATTACKER }));
  s.on("error", () => undefined);
  return s;
}

/** Records of about `kb` KB of NDJSON text. */
function recordsOfKb(kb: number, tag: string): string[] {
  const out: string[] = [];
  let n = 0;
  for (let i = 0; n < kb * 1024; i++) {
    const r = route53Record(`${tag}-${i}`, [publicIp(i % 500), publicIp((i * 7) % 500)]);
    out.push(r);
    n += r.length;
  }
  return out;
}

function h2session(grpc: string): http2.ClientHttp2Session {
  const s = http2.connect(`http://${grpc}`, { maxSessionMemory: 1024, localAddress: ATTACKER } as http2.SecureClientSessionOptions);
  s.on("error", () => undefined);
  return s;
}

/** Row 1: one EnrichStream sending `streamed` requests of 130 KB and never reading; `unary` unread Enrich calls on one connection. */
export function grpcUnread(t: Target, streamed: number, unary: number): Attack {
  const batch = grpcFrame(enrichRequest(recordsOfKb(130, "g"), "x"));
  const a = h2session(t.grpc);
  const stream = a.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/EnrichStream", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${TOKEN}` });
  stream.on("error", () => undefined);
  stream.pause();
  let written = 0;
  let stopped = false;
  // Written as fast as the server's flow control lets them in.
  const pump = (): void => {
    while (!stopped && written < streamed) {
      written++;
      if (!stream.write(batch)) {
        stream.once("drain", pump);
        return;
      }
    }
    if (written >= streamed) stream.end();
  };
  pump();
  const b = h2session(t.grpc);
  const statuses: Record<string, number> = {};
  for (let i = 0; i < unary; i++) {
    const s = b.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/Enrich", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${TOKEN}` });
    s.on("error", () => undefined);
    s.on("response", (h) => {
      const st = h["grpc-status"];
      if (st !== undefined) statuses[String(st)] = (statuses[String(st)] ?? 0) + 1;
    });
    s.pause();
    s.end(batch);
  }
  return {
    async stop() {
      stopped = true;
      stream.destroy();
      a.destroy();
      b.destroy();
      const refused = Object.entries(statuses).map(([k, v]) => `status ${k}×${v}`).join(", ");
      return `stream: ${written} of ${streamed} requests got in; unary refused at once: ${refused || "none"}`;
    },
  };
}

/** Row 2: `total` health Watch streams without a token, `perSession` per HTTP/2 connection, never read. */
export function watchFlood(t: Target, total: number, perSession: number): Attack {
  const sessions: http2.ClientHttp2Session[] = [];
  const statuses: Record<string, number> = {};
  let opened = 0;
  let stopped = false;
  const watchReq = grpcFrame(Buffer.alloc(0));
  const run = async (): Promise<void> => {
    while (!stopped && opened < total) {
      const s = h2session(t.grpc);
      sessions.push(s);
      for (let i = 0; i < perSession && opened < total; i++, opened++) {
        const st = s.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
        st.on("error", () => undefined);
        st.on("response", (h) => {
          const c = h["grpc-status"];
          if (c !== undefined) statuses[String(c)] = (statuses[String(c)] ?? 0) + 1;
        });
        st.pause();
        st.end(watchReq);
      }
      await sleep(2);
    }
  };
  const running = run();
  return {
    async stop() {
      stopped = true;
      await running;
      for (const s of sessions) s.destroy();
      return `${opened} Watch streams opened on ${sessions.length} connections; refused at once: ${Object.entries(statuses).map(([k, v]) => `status ${k}×${v}`).join(", ") || "none"}`;
    },
  };
}

/** Row 3: `clients` authorised clients each sending one body byte every `everyMs`; each reconnects when the server closes it. */
export function slowBodies(t: Target, clients: number, everyMs: number): Attack {
  const statuses: Record<string, number> = {};
  let stopped = false;
  const socks = new Set<net.Socket>();
  const one = async (): Promise<void> => {
    while (!stopped) {
      const s = connect(t.http);
      socks.add(s);
      await new Promise<void>((resolve) => {
        let got = "";
        s.on("data", (c: Buffer) => (got += c.toString("latin1")));
        const timer = setInterval(() => s.write("x"), everyMs);
        s.once("close", () => {
          clearInterval(timer);
          socks.delete(s);
          const st = /^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? "closed";
          statuses[st] = (statuses[st] ?? 0) + 1;
          resolve();
        });
        s.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{`);
      });
      if (!stopped) await sleep(100);
    }
  };
  const all = Promise.all(Array.from({ length: clients }, () => one()));
  return {
    async stop() {
      stopped = true;
      for (const s of socks) s.destroy();
      await all;
      return `answers to the slow clients: ${Object.entries(statuses).map(([k, v]) => `${k}×${v}`).join(", ") || "none yet"}`;
    },
  };
}

/** What an attack of raw TCP connections (`rawConnections`) saw of them. */
interface ConnectionCounts {
  /** Connections that connected. */
  connected: number;
  /** Connections the server closed before the attack was stopped. */
  closedByServer: number;
  /** Connections still open when it was stopped. */
  openAtEnd: number;
  /** Connections made a second, from the first opened to the last connected. */
  perSecond: number;
}

/** Connections a `rawConnections` attack opens, one group after the other. */
interface ConnectionGroup {
  /** Where to connect (host:port or http://host:port), taken in turn. */
  urls: string[];
  count: number;
  /** After every `burst` connections opened, a pause of `pauseMs`. */
  burst?: number;
  pauseMs?: number;
  /** What each connection writes once connected: bytes, or a number of zero bytes. */
  writes?: Array<Buffer | number>;
}

/**
 * The attacker of `rawConnections`, run as plain JavaScript in a process of its own at the
 * lowest CPU priority. Argument: the plan as JSON (the attacker's address, the groups with
 * their writes in base64 or as a count of zeros). On SIGTERM it destroys what is still
 * open and writes its counts as JSON on stdout; it exits when its stdin closes (the test
 * process is gone).
 */
const RAW_CONNECTIONS_JS = `
const net = require("node:net");
const os = require("node:os");
try { os.setPriority(19); } catch {}
const plan = JSON.parse(process.argv[1]);
const counts = { connected: 0, closedByServer: 0, openAtEnd: 0, perSecond: 0 };
const socks = new Set();
let stopped = false, first = 0, last = 0;
function hostPort(url) { const u = new URL(url.includes("://") ? url : "http://" + url); return { host: u.hostname, port: Number(u.port) }; }
async function run() {
  first = performance.now();
  for (const g of plan.groups) {
    const writes = (g.writes || []).map((w) => typeof w === "number" ? Buffer.alloc(w) : Buffer.from(w, "base64"));
    for (let i = 0; i < g.count && !stopped; i++) {
      const s = net.connect(Object.assign(hostPort(g.urls[i % g.urls.length]), { localAddress: plan.from }));
      s.on("error", () => undefined);
      socks.add(s);
      s.once("connect", () => { counts.connected++; last = performance.now(); for (const w of writes) s.write(w); });
      s.once("close", () => { socks.delete(s); if (!stopped) counts.closedByServer++; });
      if (g.burst && i % g.burst === g.burst - 1) await new Promise((r) => setTimeout(r, g.pauseMs));
    }
  }
}
run();
process.stdin.resume();
process.stdin.on("close", () => process.exit(0));
process.on("SIGTERM", () => {
  stopped = true;
  counts.openAtEnd = socks.size;
  counts.perSecond = last > first ? (counts.connected * 1000) / (last - first) : 0;
  for (const s of socks) s.destroy();
  process.stdout.write(JSON.stringify(counts), () => process.exit(0));
});
`;

/**
 * An attack of raw TCP connections from the attacker's address, the groups opened in
 * order; stop() ends it, the connections still open are destroyed, and it says what
 * `report` makes of the counts.
 *
 * The attacker runs in a process of its own at the lowest CPU priority. Opening
 * thousands of connections a second takes a core; on the 2-core machines this suite runs
 * on, an attacker at the same priority as the server leaves the server, the shipper, the
 * prober and the kernel's network work queueing for the other one, which an attacker on
 * another host would not. At low priority it still opens its connections as fast (the
 * row's notes say how many a second), and takes what the others leave.
 */
function rawConnections(groups: ConnectionGroup[], report: (c: ConnectionCounts) => string): Attack {
  const plan = {
    from: ATTACKER,
    groups: groups.map((g) => Object.assign({}, g, { writes: g.writes?.map((w) => (typeof w === "number" ? w : w.toString("base64"))) })),
  };
  const child = spawn(process.execPath, ["-e", RAW_CONNECTIONS_JS, JSON.stringify(plan)], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString("utf8")));
  child.stderr.on("data", (b: Buffer) => (err += b.toString("utf8")));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let result: Promise<string> | undefined;
  return {
    stop() {
      result ??= (async () => {
        child.kill("SIGTERM");
        await exited;
        child.stdin.destroy();
        if (out === "") throw new Error(`the attacker process ended without its counts (exit ${String(child.exitCode ?? child.signalCode)}): ${err.slice(0, 500)}`);
        return report(JSON.parse(out) as ConnectionCounts);
      })();
      return result;
    },
  };
}

/** Row 4: `count` TCP connections, split over both ports, that never send a byte. */
export function idleConnections(t: Target, count: number): Attack {
  return rawConnections(
    [{ urls: [t.http, t.grpc], count, burst: 200, pauseMs: 10 }],
    (c) => `${count} opened (${c.connected} connected, ${Math.round(c.perSecond)} a second), ${c.closedByServer} closed by the server, ${c.openAtEnd} open at the end`,
  );
}

/** Row 5: `clients` authorised clients each posting `records` records (gzip) and never reading the answer; each reconnects when closed. */
export function unreadBigAnswers(t: Target, clients: number, records: number): Attack {
  const lines: string[] = [];
  for (let i = 0; i < records; i++) lines.push(route53Record(`big-${i}`, [publicIp(i % 2000), publicIp((i * 13) % 2000)]).slice(0, -1) + `,"pad":"${"p".repeat(230)}"}`);
  const plain = lines.join("\n") + "\n";
  const body = gzipSync(plain);
  const head = `POST /v1/enrich HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\nContent-Length: ${body.length}\r\n\r\n`;
  let stopped = false;
  let posted = 0;
  const socks = new Set<net.Socket>();
  const one = async (): Promise<void> => {
    while (!stopped) {
      const s = connect(t.http);
      socks.add(s);
      s.pause();
      await new Promise<void>((resolve) => {
        s.once("close", () => {
          socks.delete(s);
          resolve();
        });
        s.write(head);
        s.write(body);
        posted++;
      });
      if (!stopped) await sleep(200);
    }
  };
  const all = Promise.all(Array.from({ length: clients }, () => one()));
  return {
    async stop() {
      stopped = true;
      for (const s of socks) s.destroy();
      await all;
      return `${clients} clients, ${posted} posts of ${(plain.length / 1e6).toFixed(1)} MB decoded (${(body.length / 1e6).toFixed(1)} MB gzip, ${records} records), answers never read`;
    },
  };
}

/** Row 6: malformed EnrichRequest messages in a loop; counts the grpc-status of each answer. */
export function malformedProtobuf(t: Target): Attack {
  const good = enrichRequest([route53Record("m", [publicIp(1)])], "an-id-of-some-length");
  const bad: Buffer[] = [
    good.subarray(0, good.length - 3), // cut inside the id string
    Buffer.concat([Buffer.from([0x0a]), varint(1_000_000), Buffer.from("short")]), // length past the end
    Buffer.from([0x0f, 0x01]), // wire type 7
    Buffer.concat([Buffer.from([0x0a, 0x02]), Buffer.from([0xc3, 0x28])]), // invalid UTF-8 in a string
    Buffer.from([0x0a]), // a tag and nothing after it
    Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // varint of 11 bytes
  ];
  const statuses: Record<string, number> = {};
  let stopped = false;
  const session = h2session(t.grpc);
  const run = async (): Promise<void> => {
    for (let i = 0; !stopped; i++) {
      await new Promise<void>((resolve) => {
        const s = session.request({ ":method": "POST", ":path": "/dnsgeo.v1.Enrichment/Enrich", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${TOKEN}` });
        const note = (h: http2.IncomingHttpHeaders): void => {
          const c = h["grpc-status"];
          if (c !== undefined) statuses[String(c)] = (statuses[String(c)] ?? 0) + 1;
        };
        s.on("response", note);
        s.on("trailers", note);
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.resume();
        s.end(grpcFrame(bad[i % bad.length] as Buffer));
      });
      await sleep(5);
    }
  };
  const running = run();
  return {
    async stop() {
      stopped = true;
      await running;
      session.destroy();
      return `answers: ${Object.entries(statuses).map(([k, v]) => `grpc-status ${k}×${v}`).join(", ")}`;
    },
    get statuses() {
      return statuses;
    },
  } as Attack & { statuses: Record<string, number> };
}

/**
 * Row 7: a loop of refused requests, as from a curl loop: wrong tokens (401), and every
 * fourth one with the right token and a 12 KB Content-Encoding value (415).
 */
export function unauthenticatedLoop(t: Target): Attack & { sent(): number } {
  let stopped = false;
  let sent = 0;
  const huge = "x".repeat(12 * 1024);
  const run = async (): Promise<void> => {
    const s = connect(t.http);
    let buf = "";
    s.on("data", (c: Buffer) => (buf += c.toString("latin1")));
    while (!stopped && !s.destroyed) {
      s.write(`POST /v1/enrich HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${sent % 4 === 3 ? TOKEN : `wrong-${sent}`}\r\nContent-Encoding: ${huge}\r\nContent-Length: 2\r\n\r\n{}`);
      sent++;
      // One at a time, as a curl loop would.
      while (!stopped && !s.destroyed && !buf.includes("\r\n\r\n")) await sleep(1);
      const i = buf.indexOf("\r\n\r\n");
      const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, i))?.[1] ?? 0);
      while (!stopped && !s.destroyed && buf.length < i + 4 + len) await sleep(1);
      buf = buf.slice(i + 4 + len);
    }
    s.destroy();
  };
  const running = (async () => {
    while (!stopped) await run();
  })();
  return {
    sent: () => sent,
    async stop() {
      stopped = true;
      await running;
      return `${sent} unauthenticated requests`;
    },
  };
}

/** Row 8: batches of records carrying their own dnsgeo and destination; checks each answer. */
export function ownFields(t: Target): Attack & { violations(): number } {
  let stopped = false;
  let checked = 0;
  let violations = 0;
  const fake = { status: "enriched", answers: [{ ip: "8.8.8.8", geo: { city_name: "Forged" } }] };
  const lines: string[] = [];
  for (let i = 0; i < 50; i++) {
    const r = JSON.parse(route53Record(`own-${i}`, [publicIp(i)])) as Record<string, unknown>;
    r.dnsgeo = fake;
    if (i % 2 === 0) r.destination = { ip: publicIp(i), geo: { city_name: "Forged" } };
    else r.destination = { geo: { country_iso_code: "XX" } };
    lines.push(JSON.stringify(r));
  }
  const body = lines.join("\n") + "\n";
  const run = async (): Promise<void> => {
    while (!stopped) {
      const res = await fetch(`${t.http}/v1/enrich`, { method: "POST", body, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/x-ndjson" } }).catch(() => undefined);
      if (res?.status === 200) {
        for (const l of (await res.text()).split("\n")) {
          if (l === "") continue;
          const o = JSON.parse(l) as { dnsgeo: { answers?: Array<{ geo?: { city_name?: string } }> }; dnsgeo_original?: unknown; destination?: { geo?: { city_name?: string; country_iso_code?: string } } };
          checked++;
          const forgedInDnsgeo = JSON.stringify(o.dnsgeo).includes("Forged");
          const keptOriginal = JSON.stringify(o.dnsgeo_original) === JSON.stringify(fake);
          const destUntouched = o.destination?.geo?.city_name === "Forged" ? Object.keys(o.destination.geo).length === 1 : o.destination?.geo?.country_iso_code === "XX" && Object.keys(o.destination.geo).length === 1;
          if (forgedInDnsgeo || !keptOriginal || !destUntouched) violations++;
        }
      } else await res?.text().catch(() => undefined);
      await sleep(20);
    }
  };
  const running = run();
  return {
    violations: () => violations,
    async stop() {
      stopped = true;
      await running;
      return `${checked} records with their own dnsgeo/destination checked, ${violations} presented as dnsgeo's answer`;
    },
  };
}

/**
 * Row 9: the Fluent forward port. `idle` connections that never send a byte, and
 * `partial` connections that each send the first `mb` MB of a message announcing 15 MB
 * (a record with one 15 MB binary value) and then nothing: without a byte budget they
 * would hold partial × mb MB until the message timeout; and `unacked` whole messages
 * whose next hop never acks, each holding an in-flight slot until `fluent.timeout_ms`.
 */
export function fluentFlood(t: Target, idle: number, partial: number, mb: number, unacked: number): Attack {
  if (t.fluent === undefined) throw new Error("the fluent row needs fluent.listen");
  const fluent = t.fluent;
  // ["t", 1, {"a": <bin32 of 15 MiB>}] cut after `mb` MB of the binary.
  const head = Buffer.from([0x93, 0xa1, 0x74, 0x01, 0x81, 0xa1, 0x61, 0xc6, 0x00, 0xf0, 0x00, 0x00]);
  const whole = Buffer.concat([Buffer.from([0x94, 0xa1, 0x74, 0x01, 0x81, 0xa1, 0x61, 0xa1, 0x62, 0x81, 0xa5]), Buffer.from("chunk"), Buffer.from([0xa1, 0x63])]);
  return rawConnections(
    [
      { urls: [fluent], count: idle, burst: 200, pauseMs: 10 },
      { urls: [fluent], count: unacked, writes: [whole] },
      { urls: [fluent], count: partial, burst: 20, pauseMs: 20, writes: [head, mb * 1024 * 1024] },
    ],
    (c) => `${idle} idle, ${partial} × ${mb} MB half-sent, ${unacked} unacked messages (${c.connected} connected, ${Math.round(c.perSecond)} a second): ${c.closedByServer} connections closed by the server, ${c.openAtEnd} open at the end`,
  );
}
