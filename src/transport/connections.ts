/**
 * Open connections of one listening port: a cap, a deadline for the first byte, and
 * room made at the cap by closing the connection that has waited longest without a
 * request in progress.
 *
 * Every open socket costs a file descriptor; a client that opens thousands and never
 * sends a byte would otherwise take the process to its descriptor limit, where
 * `/livez`, lookups and gRPC all fail. At the cap a new connection is worth more than
 * the oldest idle one (a shipper reconnects; a silent socket is most likely an
 * attacker's), so that one is closed instead of refusing the newcomer. When every
 * open connection is busy, a few reserved connections are still accepted for the ops
 * routes only (the HTTP server serves nothing else on them), so `/livez` and
 * `/readyz` keep answering; past those the connection is closed at once.
 */
import { readFileSync } from "node:fs";
import * as net from "node:net";
import type { Socket } from "node:net";
import type { Metrics } from "../observability/metrics.js";
import type { Logger } from "../observability/logger.js";

export interface ConnectionLimitOptions {
  transport: "http" | "grpc" | "fluent";
  /** Open connections at most (`http.max_connections`, `grpc.max_connections`, `fluent.max_connections`). */
  maxConnections: number;
  /** A connection that has sent no byte this long after it opened is closed, milliseconds. */
  firstByteTimeoutMs: number;
  /** Connections accepted past the cap when none can be closed; only ops requests are served on them. */
  reserved: number;
  /**
   * Which idle connection may be closed to make room. `request`: one without a request
   * in progress (the HTTP server reports requests); `silent`: one that has not sent a
   * byte yet (gRPC, whose sessions grpc-js closes itself when idle).
   */
  evict: "request" | "silent";
  metrics: Metrics;
  logger: Logger;
}

interface Conn {
  readonly socket: Socket;
  readonly key: string;
  /** Requests in progress (HTTP/1.1 pipelining may have more than one). */
  busy: number;
  reserved: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Calls refused on this connection (see `noteRefusal`). */
  refusals: number;
}

const noop = (): void => undefined;

/** The key of a connection as a request sees it: the peer's address and port (unique among open connections of one port). */
export function peerKey(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`;
}

/** Tracks the open connections of one port; see the module comment. */
export class ConnectionLimiter {
  private readonly conns = new Map<string, Conn>();
  /** Connections that may be closed to make room, the longest idle first (a Set keeps insertion order). */
  private readonly idle = new Set<Conn>();
  private reservedInUse = 0;

  constructor(private readonly opts: ConnectionLimitOptions) {}

  /** Open connections now. */
  get size(): number {
    return this.conns.size;
  }

  /**
   * Call for every new connection (the raw TCP socket, before TLS). Returns false when
   * it was refused and destroyed.
   */
  accept(socket: Socket): boolean {
    const { transport, metrics } = this.opts;
    let reserved = false;
    if (this.conns.size >= this.opts.maxConnections && !this.evictOne()) {
      if (this.reservedInUse >= this.opts.reserved) {
        metrics.connectionsClosed.inc({ transport, reason: "max_connections" });
        socket.destroy();
        return false;
      }
      reserved = true;
      this.reservedInUse++;
    }
    const conn: Conn = { socket, key: peerKey(socket), busy: 0, reserved, timer: undefined, refusals: 0 };
    this.conns.set(conn.key, conn);
    this.idle.add(conn);
    metrics.openConnections.inc({ transport });
    if (this.opts.firstByteTimeoutMs > 0) {
      conn.timer = setTimeout(() => {
        conn.timer = undefined;
        if (socket.bytesRead === 0 && !socket.destroyed) {
          metrics.connectionsClosed.inc({ transport, reason: "first_byte_timeout" });
          socket.destroy();
        }
      }, this.opts.firstByteTimeoutMs);
      conn.timer.unref();
    }
    socket.once("close", () => this.forget(conn));
    return true;
  }

  /** True when the connection was accepted past the cap: serve ops routes only on it. */
  isReserved(socket: Socket): boolean {
    return this.conns.get(peerKey(socket))?.reserved === true;
  }

  /**
   * A request started on the connection of `socket` (which may be the TLS socket over
   * the accepted one): it is not idle until the returned function is called (once the
   * request is answered or abandoned).
   */
  requestStarted(socket: Socket): () => void {
    const conn = this.conns.get(peerKey(socket));
    if (!conn) return noop;
    conn.busy++;
    this.idle.delete(conn);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      conn.busy--;
      // Re-adding moves it to the end: the longest idle stay first.
      if (conn.busy === 0 && this.conns.get(conn.key) === conn) this.idle.add(conn);
    };
  }

  /**
   * Counts a call refused on the connection with this peer key and closes the
   * connection once `max` were: a client that keeps opening calls it is refused costs a
   * new connection (a handshake, and a slot under the cap) for every `max` of them,
   * instead of a stream each. Returns true when the connection was closed.
   */
  noteRefusal(key: string, max: number, reason: string): boolean {
    const conn = this.conns.get(key);
    if (!conn || ++conn.refusals < max) return false;
    this.opts.metrics.connectionsClosed.inc({ transport: this.opts.transport, reason });
    conn.socket.destroy();
    return true;
  }

  /** Closes the connection with this peer key (`peerKey`, or grpc-js's `getPeer()`), when open. */
  destroy(key: string): void {
    this.conns.get(key)?.socket.destroy();
  }

  /** Destroys every connection without a request in progress (as a shutdown starts). */
  destroyIdle(): void {
    for (const c of [...this.conns.values()]) if (c.busy === 0) c.socket.destroy();
  }

  /** Destroys every connection that has not sent a byte (as a shutdown starts, where the server was never handed them). */
  destroySilent(): void {
    for (const c of [...this.conns.values()]) if (c.socket.bytesRead === 0) c.socket.destroy();
  }

  /** Destroys every connection still open (after a shutdown's grace period). */
  destroyAll(): void {
    for (const c of [...this.conns.values()]) c.socket.destroy();
  }

  private evictOne(): boolean {
    for (const conn of this.idle) {
      this.idle.delete(conn);
      if (conn.socket.destroyed) continue;
      // gRPC: a connection that has spoken is left to grpc-js's idle timeout; it never becomes silent again.
      if (this.opts.evict === "silent" && conn.socket.bytesRead > 0) continue;
      if (conn.busy > 0) continue;
      this.opts.metrics.connectionsClosed.inc({ transport: this.opts.transport, reason: "evicted" });
      conn.socket.destroy();
      this.forget(conn);
      return true;
    }
    return false;
  }

  private forget(conn: Conn): void {
    if (this.conns.get(conn.key) !== conn) return;
    this.conns.delete(conn.key);
    this.idle.delete(conn);
    if (conn.timer) clearTimeout(conn.timer);
    if (conn.reserved) this.reservedInUse--;
    this.opts.metrics.openConnections.dec({ transport: this.opts.transport });
  }
}

/**
 * A plain TCP listener for a port whose protocol server (Node's HTTP server, grpc-js) is
 * handed each connection at its first byte (a request line, the HTTP/2 preface or a TLS
 * hello), put back in front of the stream. Those servers set up a parser or a session,
 * timers and listeners for a connection as soon as they get one, so a connection that
 * never speaks would cost all that; silent ones stay with `connections`, which closes
 * them. `pauseFirst`: hand the socket over paused (a TLS server or grpc-js reads the bytes
 * put back from a paused socket; Node's plain HTTP server needs it flowing, as it reads
 * those bytes through the stream and the next ones from the handle). Sockets get
 * TCP_NODELAY and keep-alive, as Node's HTTP server sets them.
 */
export function firstByteListener(connections: ConnectionLimiter, pauseFirst: boolean, handOver: (socket: Socket) => void): net.Server {
  return net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
    // Before the hand-over no protocol server listens for its errors; a reset just ends it.
    socket.on("error", () => undefined);
    if (!connections.accept(socket)) return;
    socket.once("data", (first: Buffer) => {
      if (pauseFirst) socket.pause();
      socket.unshift(first);
      handOver(socket);
    });
  });
}

/**
 * Listen backlog of both ports (the kernel caps it at net.core.somaxconn). Node's 511
 * overflows under a burst of connections: the kernel then drops the handshakes it has
 * no room for and retries them a second or more later, so a health probe arriving in
 * the burst waits that long before dnsgeo even sees it.
 */
export const LISTEN_BACKLOG = 4096;

/** The process's open-file limit (soft), or undefined where it cannot be read (not Linux). */
export function fileDescriptorLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (!m) return undefined;
  return m[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/**
 * Share of the descriptor limit the connection caps may take together; the rest stays
 * for the SQLite file, outbound connections (ip-api, DynamoDB, the forward next hop) and
 * the reserved ops connections.
 */
export const CONNECTION_SHARE_OF_FD_LIMIT = 0.75;

/** A warning text when the caps leave too few descriptors, else undefined. */
export function connectionCapWarning(caps: { http?: number; grpc?: number; fluent?: number }, fdLimit: number | undefined): string | undefined {
  if (fdLimit === undefined || !Number.isFinite(fdLimit)) return undefined;
  const sum = (caps.http ?? 0) + (caps.grpc ?? 0) + (caps.fluent ?? 0);
  if (sum <= fdLimit * CONNECTION_SHARE_OF_FD_LIMIT) return undefined;
  const named = Object.keys(caps).filter((k) => (caps[k as keyof typeof caps] ?? 0) > 0).map((k) => `${k}.max_connections`).join(" + ");
  return `${named} is ${sum}, above ${Math.round(CONNECTION_SHARE_OF_FD_LIMIT * 100)}% of the process's open-file limit (${fdLimit}): at the cap the process can run out of file descriptors; lower the caps or raise the limit (ulimit -n)`;
}
