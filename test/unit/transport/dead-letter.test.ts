/** The dead-letter line format: a record's text comes back byte for byte, whatever it holds. */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DEAD_LETTER_KEY, deadLetterLine, parseDeadLetterLine } from "../../../src/transport/dead-letter.js";

const reason = { status: 400, answer: 'bad "thing"\n', time: "2026-01-01T00:00:00.000Z" };

describe("dead-letter lines", () => {
  it("a JSON object record reads as itself with the reason appended under dnsgeo_dead_letter", () => {
    const line = deadLetterLine('{"a":1,"big":9223372036854775808}', reason);
    expect(line).toBe(`{"a":1,"big":9223372036854775808,"${DEAD_LETTER_KEY}":{"status":400,"answer":"bad \\"thing\\"\\n","time":"2026-01-01T00:00:00.000Z"}}`);
    expect(parseDeadLetterLine(line)).toEqual({ text: '{"a":1,"big":9223372036854775808}', reason });
  });

  it("an empty object, a non-JSON line and an array keep their text", () => {
    for (const text of ["{}", "not json {", "[1,2]", '{"a":"x","dnsgeo_dead_letter":{"status":1}}']) {
      expect(parseDeadLetterLine(deadLetterLine(text, reason))?.text).toBe(text);
    }
  });

  it("any JSON value's text or any string round-trips, and every line is JSON", () => {
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string(), fc.dictionary(fc.string(), fc.jsonValue()).map((o) => JSON.stringify(o))), (text) => {
        const line = deadLetterLine(text, reason);
        expect(() => JSON.parse(line) as unknown).not.toThrow();
        expect(line.includes("\n")).toBe(false);
        const back = parseDeadLetterLine(line);
        expect(back?.reason).toEqual(reason);
        const t = text.trim();
        // Objects are stored trimmed (their meaning is unchanged); everything else exactly.
        expect(back?.text).toBe(t.startsWith("{") && t.endsWith("}") && back?.text !== text ? t : text);
      }),
      { numRuns: 2000 },
    );
  });
});
