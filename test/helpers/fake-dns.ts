/**
 * A tiny authoritative-looking DNS server over UDP on 127.0.0.1, port 0, for
 * resolver tests: A and AAAA answers with a TTL chosen per name, NOERROR with
 * no answers (NODATA) for a known name without records of the asked type,
 * NXDOMAIN for unknown names, and a "hang" mode (global or per name) that
 * never answers. It counts queries per name and type and the most queries it
 * held unanswered at once, so tests can check caching, dedupe and the
 * concurrency cap. No real DNS is ever involved.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import ipaddr from "ipaddr.js";

/** What a name answers. */
export interface FakeDnsRecord {
  a?: string[];
  aaaa?: string[];
  /** TTL of every answer of this name, seconds. Default 300. */
  ttl?: number;
  /** TTL of the AAAA answers when it differs, seconds. */
  aaaaTtl?: number;
}

export interface FakeDnsOptions {
  /** Names (lower case, no trailing dot) and what they answer. */
  records?: Record<string, FakeDnsRecord>;
  /** Answer every query after this many milliseconds (0: at once). */
  delayMs?: number;
  /** Names that are never answered. */
  hang?: Iterable<string>;
}

export interface FakeDnsCounts {
  /** Queries received (each A or AAAA question counts once). */
  queries: number;
  /** Queries received and not yet answered right now. */
  inFlight: number;
  /** Most queries unanswered at once. */
  maxInFlight: number;
}

export interface FakeDns {
  readonly port: number;
  /** `127.0.0.1:<port>`, the form `resolve.servers` takes. */
  readonly server: string;
  readonly counts: FakeDnsCounts;
  /** Queries per `name/TYPE` (`example.com/A`). */
  readonly asked: Map<string, number>;
  /** Queries received for one name, any type. */
  queriesFor(name: string): number;
  /** Adds or replaces what a name answers. */
  set(name: string, rec: FakeDnsRecord): void;
  /** `hang`: stop answering anything; `normal`: answer again. */
  setMode(mode: "normal" | "hang"): void;
  setDelay(ms: number): void;
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

interface Question {
  id: number;
  rd: boolean;
  /** Question section bytes, echoed in the answer. */
  raw: Buffer;
  name: string;
  type: number;
}

function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return undefined;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off] as number;
    off++;
    if (len === 0) break;
    if (len > 63 || off + len > msg.length) return undefined;
    labels.push(msg.toString("latin1", off, off + len));
    off += len;
  }
  if (off + 4 > msg.length) return undefined;
  const type = msg.readUInt16BE(off);
  off += 4;
  return { id: msg.readUInt16BE(0), rd: ((msg[2] as number) & 1) === 1, raw: msg.subarray(12, off), name: labels.join(".").toLowerCase(), type };
}

function answerMessage(q: Question, rcode: number, rdatas: Buffer[], ttl: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header[2] = 0x84 | (q.rd ? 1 : 0); // QR, AA, RD echoed
  header[3] = 0x80 | rcode; // RA
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const parts: Buffer[] = [header, q.raw];
  for (const rdata of rdatas) {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(rdata.length, 10);
    parts.push(rr, rdata);
  }
  return Buffer.concat(parts);
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeDns(opts: FakeDnsOptions = {}): Promise<FakeDns> {
  const records = new Map<string, FakeDnsRecord>(Object.entries(opts.records ?? {}));
  const hangNames = new Set(opts.hang ?? []);
  let mode: "normal" | "hang" = "normal";
  let delayMs = opts.delayMs ?? 0;
  const counts: FakeDnsCounts = { queries: 0, inFlight: 0, maxInFlight: 0 };
  const asked = new Map<string, number>();
  const perName = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const sock: Socket = createSocket("udp4");

  function reply(q: Question, to: RemoteInfo): void {
    const rec = records.get(q.name);
    let msg: Buffer;
    if (!rec) msg = answerMessage(q, 3, [], 0);
    else {
      const ips = q.type === TYPE_A ? (rec.a ?? []) : q.type === TYPE_AAAA ? (rec.aaaa ?? []) : [];
      const ttl = q.type === TYPE_AAAA && rec.aaaaTtl !== undefined ? rec.aaaaTtl : (rec.ttl ?? 300);
      msg = answerMessage(q, 0, ips.map((ip) => Buffer.from(ipaddr.parse(ip).toByteArray())), ttl);
    }
    counts.inFlight--;
    sock.send(msg, to.port, to.address);
  }

  sock.on("message", (msg, rinfo) => {
    const q = parseQuestion(msg);
    if (!q) return;
    counts.queries++;
    const key = `${q.name}/${q.type === TYPE_A ? "A" : q.type === TYPE_AAAA ? "AAAA" : String(q.type)}`;
    asked.set(key, (asked.get(key) ?? 0) + 1);
    perName.set(q.name, (perName.get(q.name) ?? 0) + 1);
    counts.inFlight++;
    if (counts.inFlight > counts.maxInFlight) counts.maxInFlight = counts.inFlight;
    if (mode === "hang" || hangNames.has(q.name)) return;
    if (delayMs <= 0) {
      reply(q, rinfo);
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      reply(q, rinfo);
    }, delayMs);
    timers.add(t);
  });

  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => {
      sock.off("error", reject);
      resolve();
    });
  });
  const port = (sock.address()).port;

  return {
    port,
    server: `127.0.0.1:${port}`,
    counts,
    asked,
    queriesFor: (name) => perName.get(name.toLowerCase()) ?? 0,
    set: (name, rec) => void records.set(name.toLowerCase(), rec),
    setMode: (m) => void (mode = m),
    setDelay: (ms) => void (delayMs = ms),
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        sock.close(() => resolve());
      }),
  };
}
