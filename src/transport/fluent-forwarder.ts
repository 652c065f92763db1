/**
 * The forward protocol's next hop: sends enriched events to an `in_forward` (Fluent Bit,
 * Fluentd) as PackedForward messages with a `chunk` option and waits for `{ack: chunk}`.
 * `send` resolves `true` only once every message of a batch was acked; the listener acks
 * the shipper only then, so a batch is never acknowledged and then lost.
 *
 * A batch goes out in messages of at most `fluent.max_send_bytes`, one after another on
 * one connection. A connection that fails (refused, reset, closed, no ack within
 * `fluent.timeout_ms`) is dropped and the message sent again on a new one, with a short
 * backoff, until `fluent.timeout_ms` has passed since the batch started; then `send`
 * resolves `false` and the shipper, which got no ack, sends the batch again (the forward
 * protocol's 503). Messages acked before that are then delivered twice: at-least-once.
 * `in_forward` has no per-record refusal, so there is nothing to dead-letter.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError, type Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { FluentProtocolError, handshakeDigest, packPackedForward, packr, rawBytes, unpackr, valueEnd } from "./fluent-codec.js";

export type FluentConfig = Config["fluent"];

/** `host:port` (IPv6 in brackets) → host and port. */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (!m) throw new Error(`not host:port: ${s}`);
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

/** `entries[lo, hi)` as one buffer: a view when they lie back to back in one buffer (the listener packs them so), else a copy. */
function joined(entries: readonly Buffer[], lo: number, hi: number, bytes: number): Buffer {
  const first = entries[lo] as Buffer;
  let end = first.byteOffset + first.length;
  for (let i = lo + 1; i < hi; i++) {
    const e = entries[i] as Buffer;
    if (e.buffer !== first.buffer || e.byteOffset !== end) return Buffer.concat(entries.slice(lo, hi), bytes);
    end += e.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, bytes);
}

/** The nonce of a HELO (`["HELO", {nonce, auth, keepalive}]`) as raw bytes, or undefined when `b` is no HELO. */
function heloNonce(b: Buffer): Buffer | undefined {
  if (b[0] !== 0x92) return undefined;
  const kindEnd = valueEnd(b, 1);
  if (kindEnd < 0 || rawBytes(b.subarray(1, kindEnd))?.toString("latin1") !== "HELO") return undefined;
  const t = b[kindEnd] as number;
  let pairs: number;
  let at: number;
  if (t >= 0x80 && t <= 0x8f) [pairs, at] = [t & 0x0f, kindEnd + 1];
  else if (t === 0xde) [pairs, at] = [b.readUInt16BE(kindEnd + 1), kindEnd + 3];
  else return undefined;
  for (let i = 0; i < pairs; i++) {
    const keyEnd = valueEnd(b, at);
    if (keyEnd < 0) return undefined;
    const valEnd = valueEnd(b, keyEnd);
    if (valEnd < 0) return undefined;
    if (rawBytes(b.subarray(at, keyEnd))?.toString("latin1") === "nonce") return rawBytes(b.subarray(keyEnd, valEnd));
    at = valEnd;
  }
  return undefined;
}

/** One pooled connection to the next hop, with the bytes it has answered and not yet read. */
class HopConnection {
  private pending: Buffer = Buffer.alloc(0);
  private waiter: ((err: Error | undefined) => void) | undefined;
  dead = false;

  constructor(readonly socket: net.Socket | tls.TLSSocket) {
    socket.setNoDelay(true);
    socket.on("data", (b: Buffer) => {
      this.pending = this.pending.length === 0 ? b : Buffer.concat([this.pending, b]);
      this.waiter?.(undefined);
    });
    const fail = (e?: Error): void => {
      this.dead = true;
      this.waiter?.(e ?? new Error("the next hop closed the connection"));
    };
    socket.on("error", fail);
    socket.on("close", () => fail());
  }

  /** Writes `msg` and waits for the ack of `chunk`. */
  async exchange(msg: Buffer, chunk: string, timeoutMs: number): Promise<void> {
    if (this.dead) throw new Error("connection closed");
    this.socket.write(msg);
    const answer = unpackr.unpack(await this.nextValue(timeoutMs, "its ack")) as unknown;
    const ack = answer !== null && typeof answer === "object" ? (answer as Record<string, unknown>).ack : undefined;
    if (ack === chunk) return;
    throw new FluentProtocolError(`the next hop answered ${JSON.stringify(answer)?.slice(0, 80)} (want ack ${chunk})`);
  }

  /**
   * The forward protocol's handshake as a client: the next hop's HELO carries a nonce;
   * dnsgeo answers PING with the digest of salt, its hostname, the nonce and the shared
   * key, and the PONG must accept it and prove the next hop knows the key as well.
   */
  async handshake(sharedKey: string, selfHostname: string, timeoutMs: number): Promise<void> {
    const nonce = heloNonce(await this.nextValue(timeoutMs, "its HELO"));
    if (nonce === undefined) throw new FluentProtocolError("the next hop's first message is not a HELO with a nonce (is its shared_key set?)");
    const salt = randomBytes(16).toString("hex");
    this.socket.write(packr.pack(["PING", selfHostname, salt, handshakeDigest(salt, selfHostname, nonce, sharedKey), "", ""]));
    const pong = unpackr.unpack(await this.nextValue(timeoutMs, "its PONG")) as unknown;
    if (!Array.isArray(pong) || pong[0] !== "PONG") throw new FluentProtocolError("the next hop did not answer the PING with a PONG");
    if (pong[1] !== true) throw new FluentProtocolError(`the next hop refused the shared key: ${String(pong[2]).slice(0, 120)}`);
    if (pong[4] !== handshakeDigest(salt, String(pong[3]), nonce, sharedKey)) throw new FluentProtocolError("the next hop's PONG does not prove it knows the shared key");
  }

  /** The bytes of the next msgpack value the next hop sends, waiting up to `timeoutMs`. */
  private async nextValue(timeoutMs: number, what: string): Promise<Buffer> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const end = this.pending.length > 0 ? valueEnd(this.pending, 0) : -1;
      if (end > 0) {
        const value = this.pending.subarray(0, end);
        this.pending = this.pending.subarray(end);
        return value;
      }
      if (this.dead) throw new Error(`the next hop closed the connection before ${what}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no ${what.replace(/^its /, "")} from the next hop within ${timeoutMs} ms`);
      await new Promise<void>((resolve, reject) => {
        // After the loop was blocked (a long enrichment, a collection), timers run before
        // sockets are read: an ack already received would count as missing and the message
        // be sent twice. setImmediate runs after the sockets were read.
        const timer = setTimeout(() => {
          this.waiter = undefined;
          setImmediate(resolve);
        }, left);
        this.waiter = (err) => {
          clearTimeout(timer);
          this.waiter = undefined;
          if (err) reject(err);
          else resolve();
        };
      });
    }
  }

  destroy(): void {
    this.dead = true;
    this.socket.destroy();
  }
}

export interface FluentForwarderDeps {
  logger?: Logger;
  metrics?: Metrics;
}

/** Sends batches of packed entries to `fluent.next_hop`. */
export class FluentForwarder {
  private readonly host: string;
  private readonly port: number;
  private readonly idle: HopConnection[] = [];
  private readonly busy = new Set<HopConnection>();
  private closed = false;
  private lastFailureLog = 0;
  private failuresSinceLog = 0;
  /** Options of `tls.connect` when `fluent.next_hop_tls.enabled`. */
  private readonly tlsOptions: tls.ConnectionOptions | undefined;

  constructor(
    private readonly cfg: FluentConfig,
    private readonly deps: FluentForwarderDeps = {},
  ) {
    if (!cfg.next_hop) throw new Error("fluent.next_hop is not set");
    const hp = parseHostPort(cfg.next_hop);
    this.host = hp.host;
    this.port = hp.port;
    const t = cfg.next_hop_tls;
    if (t.enabled) {
      // Read once at start: a file that cannot be read stops dnsgeo with the key named.
      const read = (file: string | undefined, key: string): Buffer | undefined => {
        if (file === undefined) return undefined;
        try {
          return readFileSync(file);
        } catch (e) {
          throw new ConfigError(`fluent.next_hop_tls.${key}: cannot read ${file}: ${(e as Error).message}`);
        }
      };
      this.tlsOptions = { host: this.host, port: this.port, rejectUnauthorized: t.verify, servername: t.server_name ?? (net.isIP(this.host) ? undefined : this.host) };
      const ca = read(t.ca_file, "ca_file");
      const cert = read(t.cert_file, "cert_file");
      const key = read(t.key_file, "key_file");
      if (ca) this.tlsOptions.ca = ca;
      if (cert) this.tlsOptions.cert = cert;
      if (key) this.tlsOptions.key = key;
      // A certificate for an IP address is checked against the address itself.
      if (t.server_name !== undefined && net.isIP(this.host)) this.tlsOptions.checkServerIdentity = (_h, c) => tls.checkServerIdentity(t.server_name as string, c);
    }
  }

  /**
   * Sends `entries` (each one packed `[time, record]` entry) under `tag`; resolves true once
   * the next hop acked all of them, false when it could not within `fluent.timeout_ms`.
   * `option` is added to every message (Fluent Bit's `fluent_signal`).
   */
  async send(tag: string, entries: readonly Buffer[], option: Record<string, unknown> = {}): Promise<boolean> {
    const started = Date.now();
    const max = this.cfg.max_send_bytes;
    let conn: HopConnection | undefined;
    try {
      for (let lo = 0; lo < entries.length; ) {
        let hi = lo;
        let bytes = 0;
        // At least one entry per message, however large: in_forward decides about it.
        while (hi < entries.length && (hi === lo || bytes + (entries[hi] as Buffer).length <= max)) bytes += (entries[hi++] as Buffer).length;
        const chunk = randomBytes(16).toString("base64");
        const msg = packPackedForward(tag, joined(entries, lo, hi, bytes), Object.assign({}, option, { chunk, size: hi - lo }));
        for (let attempt = 0; ; attempt++) {
          const left = this.cfg.timeout_ms - (Date.now() - started);
          if (this.closed || left <= 0) return false;
          try {
            conn ??= await this.take(left);
            const sent = performance.now();
            await conn.exchange(msg, chunk, left);
            this.deps.metrics?.fluentNextHopMessages.inc({ result: "acked" });
            this.deps.metrics?.fluentNextHopDuration.observe((performance.now() - sent) / 1000);
            break;
          } catch (e) {
            this.deps.metrics?.fluentNextHopMessages.inc({ result: "failed" });
            conn?.destroy();
            if (conn) this.busy.delete(conn);
            conn = undefined;
            this.logFailure(e);
            // A restarting next hop refuses connections for a while: back off, 50 ms doubling to 1 s.
            const wait = Math.min(1000, 50 * 2 ** Math.min(attempt, 5), Math.max(0, this.cfg.timeout_ms - (Date.now() - started)));
            await new Promise((r) => setTimeout(r, wait));
          }
        }
        lo = hi;
      }
      return true;
    } finally {
      if (conn) {
        this.busy.delete(conn);
        if (!conn.dead && !this.closed) this.idle.push(conn);
        else conn.destroy();
      }
    }
  }

  /** An idle connection, or a new one. */
  private async take(timeoutMs: number): Promise<HopConnection> {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (!c.dead) {
        this.busy.add(c);
        return c;
      }
    }
    const started = Date.now();
    const socket = this.tlsOptions ? tls.connect(this.tlsOptions) : net.connect({ host: this.host, port: this.port });
    const conn = new HopConnection(socket);
    this.busy.add(conn);
    try {
      await this.connected(socket, timeoutMs);
      const key = this.cfg.next_hop_shared_key;
      if (key !== undefined) await conn.handshake(key, this.cfg.self_hostname, Math.max(1, timeoutMs - (Date.now() - started)));
    } catch (e) {
      conn.destroy();
      this.busy.delete(conn);
      throw e;
    }
    return conn;
  }

  private connected(socket: net.Socket, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connecting to the next hop took over ${timeoutMs} ms`)), timeoutMs);
      // Over TLS the connection is ready once the TLS handshake is done (and the certificate checked).
      socket.once(socket instanceof tls.TLSSocket ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once("close", () => {
        clearTimeout(timer);
        reject(new Error("the next hop closed the connection"));
      });
    });
  }

  /** One line per 10 s at most, with the count of failures since the last one. */
  private logFailure(e: unknown): void {
    this.failuresSinceLog++;
    const now = Date.now();
    if (now - this.lastFailureLog < 10_000) return;
    this.deps.logger?.warn({ err: e, next_hop: this.cfg.next_hop, failures: this.failuresSinceLog }, "fluent next hop failed; retrying");
    this.lastFailureLog = now;
    this.failuresSinceLog = 0;
  }

  /** Closes idle connections; sends still running give up at their next retry. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
    for (const c of this.busy) c.destroy();
    this.busy.clear();
  }
}
