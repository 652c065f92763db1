/**
 * A growable output buffer that UTF-8 encodes strings straight into place.
 * Used where output is built from many pieces (the ECS fast path's JsonText):
 * joining the pieces first would copy every byte once more, and an enriched
 * batch is several times the size of its input.
 */
/**
 * `buf.utf8Write(s, off)`: Node's encoder without `Buffer#write`'s argument
 * handling, which costs more than the copy for short strings (protobufjs uses it
 * the same way, with the same fallback).
 */
type WithUtf8Write = Buffer & { utf8Write?: (s: string, offset: number) => number };
const utf8Write: (buf: Buffer, s: string, off: number) => number =
  typeof (Buffer.prototype as WithUtf8Write).utf8Write === "function"
    ? (buf, s, off) => (buf as WithUtf8Write & { utf8Write(s: string, offset: number): number }).utf8Write(s, off)
    : (buf, s, off) => buf.write(s, off, "utf8");

/** Strings up to this many UTF-16 units are copied by a loop in `str`, cheaper than the encoder call (docs/performance.md). */
const SHORT = 32;

export class Utf8Writer {
  protected buf: Buffer;
  /** Bytes written so far. */
  off = 0;

  /**
   * `sizeHint`: expected bytes (ASCII text: its length); the buffer grows past it when needed.
   * `into`: a buffer to write into instead of a new one (used when it holds `sizeHint`;
   * past its end the writer moves to a buffer of its own, and `finish()` is no longer a view of it).
   */
  constructor(sizeHint: number, into?: Buffer) {
    this.buf = into !== undefined && into.length >= sizeHint ? into : Buffer.allocUnsafe(Math.max(64, sizeHint));
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.off + n, this.buf.length * 2));
    this.buf.copy(bigger, 0, 0, this.off);
    this.buf = bigger;
  }

  /** Appends `s` as UTF-8. */
  str(s: string): void {
    const n = s.length;
    if (n <= SHORT) {
      // Short text (the separators and keys between a record's cached pieces): a loop
      // here costs less than the call into the encoder. ASCII only; other text from
      // its first non-ASCII unit on goes to the encoder.
      if (this.off + n > this.buf.length) this.ensure(n);
      const buf = this.buf;
      const off = this.off;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[off + i] = c;
      }
      this.off = off + i;
      if (i === n) return;
      s = s.slice(i);
    }
    // A UTF-16 unit becomes at most 3 bytes; count exactly only when that worst case does not fit.
    if (this.off + s.length * 3 > this.buf.length) this.ensure(Buffer.byteLength(s, "utf8"));
    this.off += utf8Write(this.buf, s, this.off);
  }

  /** Appends bytes as they are. */
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
  }

  /** Appends `src[from, to)` as it is. */
  copy(src: Buffer, from: number, to: number): void {
    this.ensure(to - from);
    this.off += src.copy(this.buf, this.off, from, to);
  }

  /** Appends one byte. */
  byte(b: number): void {
    if (this.off >= this.buf.length) this.ensure(1);
    this.buf[this.off++] = b;
  }

  /** The bytes written (a view, not a copy). */
  finish(): Buffer {
    return this.off === this.buf.length ? this.buf : this.buf.subarray(0, this.off);
  }
}
