/**
 * A growable buffer msgpack is written into piece by piece: headers, strings, bytes
 * packed once and kept (a lookup entry's answer map), and any other value packed on the
 * spot. The forward path writes an enriched record as its own bytes plus the added keys
 * this way, with no object built for the added keys and no packing of the record.
 */
import { Packr } from "msgpackr";
import { Utf8Writer } from "./utf8-writer.js";

/** Plain maps and arrays, no msgpackr records: what any msgpack reader reads. */
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** msgpack bytes of `v` (a JSON-like value). */
export function packValue(v: unknown): Buffer {
  return packr.pack(v);
}

export class MsgpackWriter extends Utf8Writer {
  /** A map header for `n` key/value pairs. */
  mapHeader(n: number): void {
    this.sizedHeader(n, 0x80, 0xde, 0xdf);
  }

  /** An array header for `n` elements. */
  arrayHeader(n: number): void {
    this.sizedHeader(n, 0x90, 0xdc, 0xdd);
  }

  /** A str value: the header for its UTF-8 length, then its bytes. */
  string(s: string): void {
    const n = s.length;
    if (n < 32) {
      // Short ASCII (keys, IPs, status codes): a fixstr, its bytes copied by a loop.
      this.ensure(n + 1);
      const buf = this.buf;
      const off = this.off;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[off + 1 + i] = c;
      }
      if (i === n) {
        buf[off] = 0xa0 | n;
        this.off = off + 1 + n;
        return;
      }
    }
    const len = Buffer.byteLength(s, "utf8");
    if (len < 32) this.byte(0xa0 | len);
    else if (len <= 0xff) this.header(0xd9, len, 1);
    else if (len <= 0xffff) this.header(0xda, len, 2);
    else this.header(0xdb, len, 4);
    this.str(s);
  }

  /** Any JSON-like value, packed. */
  value(v: unknown): void {
    this.bytes(packr.pack(v));
  }

  private sizedHeader(n: number, fix: number, b16: number, b32: number): void {
    if (n <= 15) this.byte(fix | n);
    else if (n <= 0xffff) this.header(b16, n, 2);
    else this.header(b32, n, 4);
  }

  /** Type byte `t` and `len` as a big-endian unsigned integer of `size` bytes. */
  private header(t: number, len: number, size: 1 | 2 | 4): void {
    this.ensure(1 + size);
    const buf = this.buf;
    buf[this.off++] = t;
    if (size === 1) buf[this.off] = len;
    else if (size === 2) buf.writeUInt16BE(len, this.off);
    else buf.writeUInt32BE(len, this.off);
    this.off += size;
  }
}
