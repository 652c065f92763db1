/**
 * The Fluent forward protocol (v1) listener: Fluent Bit's `out_forward`, Fluentd's
 * `out_forward` and other forward clients send here; the events are enriched through the
 * same enricher as HTTP and sent on to `fluent.next_hop`'s `in_forward`. Message, Forward,
 * PackedForward and CompressedPackedForward modes; `[time, record]` and Fluent Bit's
 * `[[time, metadata], record]` entries, each sent on with its own time and metadata.
 *
 * A message's `chunk` is answered `{ack: chunk}` only after the next hop acked the
 * enriched events. When the next hop does not within `fluent.timeout_ms`, the connection is
 * closed without an ack: the shipper sends the chunk again (at-least-once).
 *
 * Messages on one connection are handled one at a time, in order; the socket is not read
 * while one is in work, so a client cannot queue more than one message and a packet.
 * Input that is not the protocol, a message over `fluent.max_message_bytes`, or a message
 * left half-sent for `fluent.message_timeout_ms` closes the connection with a log line (at
 * most one per 10 s, with a count).
 *
 * Every message goes through the request path HTTP and gRPC use (request-path.ts): it is
 * admitted to one of `fluent.max_inflight_messages` slots, refused while shutting down,
 * and drained on close. The forward protocol has no way to say "retry later", so a refusal
 * closes the connection without an ack, and the shipper sends the chunk again. Open
 * connections are capped and silent ones closed as on the other ports (connections.ts),
 * and received bytes count against `fluent.max_buffered_bytes`.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import type { App } from "../app.js";
import { MsgpackWriter } from "../codecs/msgpack-writer.js";
import type { Enricher, OutputItem, PackedAdded } from "../pipeline/enrich.js";
import type { DecodedItem } from "../pipeline/types.js";
import { extendEntry, FluentProtocolError, handshakeDigest, packEntry, packr, readMessage, recordOf, rawBytes, valueEnd, writeExtendedEntry, type FluentEvent, type FluentMessage } from "./fluent-codec.js";
import { parseHostPort, type FluentForwarder } from "./fluent-forwarder.js";
import { httpsOptions, loadTls } from "./tls.js";
import { ByteBudget, clientKey } from "./byte-budget.js";
import { ConnectionLimiter, LISTEN_BACKLOG } from "./connections.js";
import { InflightLimiter } from "./limits.js";
import { requestPathFor } from "./request-path.js";

/**
 * Checks a PING (`["PING", hostname, shared_key_salt, hexdigest, username, password_digest]`)
 * against the nonce of this connection's HELO; the PONG to answer with and whether it passed.
 */
export function answerPing(bytes: Buffer, nonce: Buffer, sharedKey: string, selfHostname: string): { ok: boolean; pong: Buffer; reason: string } {
  const refuse = (reason: string): { ok: boolean; pong: Buffer; reason: string } => ({ ok: false, reason, pong: packr.pack(["PONG", false, reason, "", ""]) });
  // The salt is random bytes sent as a str: read as raw bytes, not decoded as UTF-8.
  const fields: Buffer[] = [];
  const t = bytes[0] as number;
  if (t < 0x94 || t > 0x9f) return refuse("the first message is not a PING");
  let at = 1;
  for (let i = 0; i < (t & 0x0f); i++) {
    const end = valueEnd(bytes, at);
    if (end < 0) return refuse("the first message is not a PING");
    const raw = rawBytes(bytes.subarray(at, end));
    if (raw === undefined) return refuse("a PING field is not a string");
    fields.push(raw);
    at = end;
  }
  const [kind, host, salt, got] = fields as [Buffer, Buffer, Buffer, Buffer];
  if (kind.toString("latin1") !== "PING") return refuse("the first message is not a PING");
  const want = Buffer.from(handshakeDigest(salt, host, nonce, sharedKey), "utf8");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return refuse("shared key mismatch");
  return { ok: true, reason: "", pong: packr.pack(["PONG", true, "", selfHostname, handshakeDigest(salt, selfHostname, nonce, sharedKey)]) };
}

export interface FluentServerDeps {
  app: App;
  forwarder: FluentForwarder;
}

export interface FluentTransport {
  /** Binds `fluent.listen`; resolves "host:port" as bound. */
  listen(): Promise<string>;
  /** Stops accepting, closes idle connections, waits up to `timeoutMs` for messages in work, then closes the rest. */
  close(timeoutMs: number): Promise<void>;
}

/** The record an output item stands for, as a value to pack. */
function itemValue(it: OutputItem): unknown {
  if (it.kind === "json") return it.value;
  if (it.kind === "jsontext") return JSON.parse(it.parts.join("")) as unknown;
  return { log: it.raw };
}

/** Events enriched at a time: what is alive at once stays small (the young generation's collections stay cheap). */
const SLICE = 256;

/**
 * The enriched entries of `msg`'s events, one each (never exploded, so each keeps its own
 * time and metadata), written back to back into one buffer, each entry a view of it.
 * Records are decoded and enriched a slice at a time, the event loop served between
 * slices. A record
 * the ECS formatter only adds keys to goes out as its own bytes with the added keys
 * appended to its map, those written as msgpack straight from the lookup entries' cached
 * bytes (`enrichPacked`); any other is packed whole.
 */
export async function enrichEntries(enricher: Enricher, msg: FluentMessage): Promise<Buffer[]> {
  const packed = msg.entries;
  const n = packed?.length ?? msg.events.length;
  let inBytes = 0;
  if (packed !== undefined) for (const e of packed) inBytes += e.bytes.length;
  // The output is the input plus the added keys, about as much again.
  const w = new MsgpackWriter(inBytes * 2 + n * 64);
  const added = new MsgpackWriter(SLICE * 1024);
  const ends = new Array<number>(n);
  for (let from = 0; from < n; from += SLICE) {
    const to = Math.min(n, from + SLICE);
    const events = packed === undefined ? msg.events.slice(from, to) : packed.slice(from, to).map(recordOf);
    const items = events.map((ev): DecodedItem => ({ kind: "json", value: ev.record }));
    added.off = 0;
    const out = await enricher.enrichPacked({ framing: "ndjson", items }, added, { explode: false });
    if (out.items.length !== events.length) throw new Error(`enrichment gave ${out.items.length} records for ${events.length} events`);
    const addedBytes = added.finish();
    for (let i = 0; i < events.length; i++) {
      const ev = events[i] as FluentEvent;
      const it = out.items[i] as OutputItem | PackedAdded;
      if (it.kind === "msgpack") writeExtendedEntry(w, ev, it.count, addedBytes, it.from, it.to);
      else {
        const ext = it.kind === "json" ? extendEntry(ev, it.value) : undefined;
        if (ext === undefined) w.bytes(packEntry(ev.time, ev.meta, itemValue(it)));
        else {
          w.bytes(ext.head);
          w.bytes(ext.body);
          w.bytes(ext.added);
        }
      }
      ends[from + i] = w.off;
    }
    // Back to the event loop between slices: a message of thousands of records would
    // otherwise hold it for hundreds of milliseconds, and the next hop's acks, other
    // connections' messages and pending writes would wait that long.
    if (to < n) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const all = w.finish();
  const entries = new Array<Buffer>(n);
  for (let i = 0, from = 0; i < n; i++) {
    entries[i] = all.subarray(from, ends[i]);
    from = ends[i] as number;
  }
  return entries;
}

/** Creates the listener of `app.config.fluent.listen`. */
export function createFluentServer(deps: FluentServerDeps): FluentTransport {
  const { app, forwarder } = deps;
  const cfg = app.config.fluent;
  const partialTimeoutMs = cfg.message_timeout_ms;
  const logger = app.logger;
  const metrics = app.metrics;
  // The record cap is not applied to a message: the forward protocol could only refuse one by
  // not acking it, and the shipper would send it again forever. A message is bounded by
  // fluent.max_message_bytes and enriched in slices instead.
  const requestPath = requestPathFor(app, "fluent", new InflightLimiter(cfg.max_inflight_messages));
  const connections = new ConnectionLimiter({
    transport: "fluent",
    maxConnections: cfg.max_connections,
    firstByteTimeoutMs: cfg.first_byte_timeout_ms,
    reserved: 0,
    evict: "request",
    metrics,
    logger,
  });
  // One address may hold half of the byte budget: the other half stays for everyone else.
  const budget = new ByteBudget(cfg.max_buffered_bytes, Math.floor(cfg.max_buffered_bytes / 2));
  // Closed connections are logged through the request path's refusal log: one warn line per
  // reason per 10 s, carrying how many were not logged since (`suppressedSinceLast`).
  const refusalLog = requestPath.refusalLog;

  /** Enriches the events of `msg` and sends them on; true once the next hop acked them. */
  const deliver = async (msg: FluentMessage): Promise<boolean> => {
    if (msg.signal !== undefined) return forwarder.send(msg.tag, msg.raw ? [msg.raw] : [], { fluent_signal: msg.signal });
    if (msg.events.length === 0 && (msg.entries?.length ?? 0) === 0) return true;
    return forwarder.send(msg.tag, await enrichEntries(app.enricher, msg));
  };

  const onConnection = (socket: net.Socket): void => {
    if (requestPath.closing) {
      socket.destroy();
      return;
    }
    // A message in work. The connection limiter is told too (requestStarted): it neither
    // evicts this connection nor, as close() starts, destroys it (destroyIdle).
    let busy = false;
    const client = clientKey(socket.remoteAddress);
    const bytesHeld = budget.lease(client);
    // Bytes of the message in work, held until it is acked or dropped.
    let working = 0;
    // With a shared key, a client proves it knows it (PING) before any message is read.
    const nonce = cfg.shared_key !== undefined ? randomBytes(16) : undefined;
    let authed = nonce === undefined;
    if (nonce !== undefined) socket.write(packr.pack(["HELO", { nonce, auth: Buffer.alloc(0), keepalive: true }]));
    const peer = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`;
    let chunks: Buffer[] = [];
    let total = 0;
    // Bytes the message being received needs at least before it can be whole.
    let need = 1;
    let gone = false;

    const drop = (kind: string, detail: string): void => {
      if (gone) return;
      gone = true;
      metrics.fluentMessages.inc({ result: kind });
      refusalLog.warn(kind, { transport: "fluent", reason: kind, peer, detail }, "fluent connection closed");
      socket.destroy();
    };

    const pump = (): void => {
      while (!gone && !busy && !requestPath.closing) {
        if (total < need) {
          // Half a message waits for the rest, within the body timeout.
          socket.setTimeout(total > 0 ? partialTimeoutMs : 0);
          return;
        }
        const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
        chunks = [buf];
        const t = buf[0] as number;
        // Refused on its first byte, not after waiting for the rest of something that is no message.
        if (t !== 0xc0 && !((t >= 0x90 && t <= 0x9f) || t === 0xdc || t === 0xdd)) {
          drop("malformed", `a message is not an array (first byte 0x${t.toString(16)})`);
          return;
        }
        let end: number;
        try {
          end = valueEnd(buf, 0);
        } catch (e) {
          drop("malformed", (e as Error).message);
          return;
        }
        if (end < 0) {
          need = -end;
          if (need > cfg.max_message_bytes) drop("too_large", `a message of at least ${need} bytes (fluent.max_message_bytes ${cfg.max_message_bytes})`);
          continue;
        }
        const bytes = buf.subarray(0, end);
        const rest = buf.subarray(end);
        chunks = rest.length > 0 ? [rest] : [];
        total = rest.length;
        need = 1;
        if (t === 0xc0) continue; // nil: a heartbeat
        if (!authed) {
          const res = answerPing(bytes, nonce as Buffer, cfg.shared_key as string, cfg.self_hostname);
          socket.write(res.pong);
          if (!res.ok) {
            metrics.fluentMessages.inc({ result: "unauthorized" });
            refusalLog.warn("auth", { transport: "fluent", reason: "auth", peer, detail: res.reason }, "fluent connection refused");
            gone = true;
            socket.end();
            return;
          }
          authed = true;
          continue;
        }
        let msg: FluentMessage;
        try {
          msg = readMessage(bytes, { maxDecodedBytes: cfg.max_decoded_bytes });
        } catch (e) {
          drop(e instanceof FluentProtocolError ? "malformed" : "undecodable", (e as Error).message.slice(0, 200));
          return;
        }
        // The same admission as an HTTP or gRPC request; refused, the chunk is not acked and comes again.
        const refused = requestPath.admit();
        if (refused) {
          drop(refused.code === "DNSGEO_SHUTTING_DOWN" ? "shutting_down" : "overload", refused.message);
          return;
        }
        busy = true;
        working = bytes.length;
        const requestDone = connections.requestStarted(socket);
        socket.setTimeout(0);
        socket.pause();
        deliver(msg).then(
          (ok) => {
            if (!ok) {
              drop("next_hop_unavailable", `next hop ${cfg.next_hop ?? ""} did not ack within fluent.timeout_ms; no ack sent, the shipper sends again`);
              return;
            }
            metrics.fluentMessages.inc({ result: "delivered" });
            metrics.fluentRecords.inc(msg.entries?.length ?? msg.events.length);
            if (msg.chunk !== undefined && !gone) socket.write(packr.pack({ ack: msg.chunk }));
          },
          (e: unknown) => {
            logger.error({ err: e, transport: "fluent" }, "fluent message failed; no ack sent");
            drop("failed", (e as Error).message);
          },
        ).finally(() => {
          busy = false;
          working = 0;
          bytesHeld.hold(total);
          requestDone();
          if (requestPath.closing && !gone) {
            gone = true;
            socket.end();
          }
          requestPath.done();
          if (!gone) {
            socket.resume();
            pump();
          }
        });
        return;
      }
    };

    socket.on("data", (b: Buffer) => {
      if (gone) return;
      chunks.push(b);
      total += b.length;
      if (!bytesHeld.resize(total + working)) {
        drop("overload", `fluent.max_buffered_bytes (${cfg.max_buffered_bytes}) reached`);
        return;
      }
      if (total > cfg.max_message_bytes && total >= need) {
        // Whole messages are taken off as they complete, so this much unread means one message is too large.
        const end = (() => {
          try {
            return valueEnd(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total), 0);
          } catch {
            return -1;
          }
        })();
        if (end < 0 || end > cfg.max_message_bytes) {
          drop("too_large", `more than fluent.max_message_bytes (${cfg.max_message_bytes}) of one message`);
          return;
        }
      }
      pump();
    });
    socket.on("timeout", () => drop("timeout", `half a message for ${partialTimeoutMs} ms`));
    socket.on("error", () => {
      gone = true;
    });
    socket.on("close", () => {
      gone = true;
      bytesHeld.release();
    });
  };

  const tlsMaterial = loadTls(cfg.tls, "fluent.tls");
  // Every accepted TCP connection passes the connection limiter first (before TLS).
  let server: net.Server;
  if (tlsMaterial) {
    server = tls.createServer(Object.assign(httpsOptions(tlsMaterial), { noDelay: true }));
    server.on("connection", (socket: net.Socket) => connections.accept(socket));
    server.on("secureConnection", onConnection);
  } else {
    server = net.createServer({ noDelay: true });
    server.on("connection", (socket: net.Socket) => {
      if (connections.accept(socket)) onConnection(socket);
    });
  }

  return {
    listen: async () => {
      if (!cfg.listen) throw new Error("fluent.listen is not set");
      const { host, port } = parseHostPort(cfg.listen);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host, port, backlog: LISTEN_BACKLOG }, () => {
          server.off("error", reject);
          resolve();
        });
      });
      const a = server.address() as net.AddressInfo;
      return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    },
    close: async (timeoutMs: number) => {
      const settled = requestPath.close(timeoutMs);
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      connections.destroyIdle();
      if (!(await settled)) logger.warn({ active: requestPath.inFlight }, "fluent: shutdown timeout; closing connections with messages in work");
      connections.destroyAll();
      await stopped;
    },
  };
}
