/**
 * JSON.parse with a nesting bound. V8 parses 100 000 levels of `[` happily, but
 * JSON.stringify and every recursive walker after it then overflow the stack
 * (RangeError), which would fail the whole batch. A value nested deeper than
 * `MAX_JSON_DEPTH` is refused like any text that is not JSON, so the record goes
 * through unparsed and unchanged.
 */

/** Deepest nesting of arrays/objects accepted in one record; real log records stay far below it. */
export const MAX_JSON_DEPTH = 512;

/** True when `text` opens more than `max` arrays/objects at once (strings are skipped). */
export function exceedsJsonDepth(text: string, max: number = MAX_JSON_DEPTH): boolean {
  // Nesting n needs at least 2n characters: short texts (nearly every record) need no scan.
  if (text.length <= 2 * max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return false;
}

/** `JSON.parse`, throwing a SyntaxError for text nested deeper than `MAX_JSON_DEPTH`. */
export function parseJsonBounded(text: string): unknown {
  if (exceedsJsonDepth(text)) throw new SyntaxError(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  return JSON.parse(text) as unknown;
}
