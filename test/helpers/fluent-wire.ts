/**
 * Fluent forward protocol bytes written by hand, the way the spec writes them, for tests
 * that send or decode messages below the codec (msgpack the encoder would not produce).
 */

/** EventTime as the spec writes it: fixext 8 (0xd7), type 0, seconds and nanoseconds big-endian. */
export function eventTimeBytes(s: number, ns: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = 0xd7;
  b[1] = 0x00;
  b.writeUInt32BE(s, 2);
  b.writeUInt32BE(ns, 6);
  return b;
}

/** A msgpack fixarray header followed by already encoded elements (at most 15). */
export function array(...elements: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([0x90 | elements.length]), ...elements]);
}
