import { expect } from "vitest";

/**
 * The text of every leaf of a JSON document, as it is written: a small recursive
 * reader of its own (not dnsgeo's scanner), for the lossless property tests. A leaf
 * is a string, number, literal, empty object or empty array; its path is the keys and
 * indices down to it (as JSON text, so it can key a Map). Duplicate keys: the last one
 * counts, as in JSON.parse.
 */
export function leafTexts(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const ws = (): void => {
    while (i < text.length && " \t\r\n".includes(text[i] as string)) i++;
  };
  const str = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return text.slice(start, i);
  };
  const clear = (prefix: string): void => {
    for (const k of [...out.keys()]) if (k.startsWith(prefix)) out.delete(k);
  };
  const value = (path: (string | number)[]): void => {
    ws();
    const c = text[i];
    const key = JSON.stringify(path);
    if (c === "{" || c === "[") {
      i++;
      ws();
      const close = c === "{" ? "}" : "]";
      if (text[i] === close) {
        i++;
        out.set(key, c + close);
        return;
      }
      let n = 0;
      for (;;) {
        ws();
        if (c === "{") {
          const k = JSON.parse(str()) as string;
          ws();
          i++; // :
          const p = [...path, k];
          clear(JSON.stringify(p).slice(0, -1)); // a later duplicate replaces the earlier one
          value(p);
        } else value([...path, n++]);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        i++; // close
        return;
      }
    }
    const start = i;
    if (c === '"') str();
    else while (i < text.length && !",]} \t\r\n".includes(text[i] as string)) i++;
    out.set(key, text.slice(start, i));
  };
  value([]);
  return out;
}

/**
 * Every leaf of `input` at its place in `output` with the same text. dnsgeo's one move:
 * a record's own top-level `dnsgeo` is kept as `dnsgeo_original` (dropped when the record
 * already has a `dnsgeo_original`, as documented). An empty object or array may gain members.
 */
export function expectLeavesKept(input: string, output: string): void {
  expect(() => JSON.parse(output) as unknown).not.toThrow();
  const before = leafTexts(input);
  const after = leafTexts(output);
  const hasOriginal = [...before.keys()].some((k) => k.startsWith('["dnsgeo_original"'));
  for (const [key, text] of before) {
    let path = JSON.parse(key) as Array<string | number>;
    if (path[0] === "dnsgeo") {
      if (hasOriginal) continue;
      path = ["dnsgeo_original", ...path.slice(1)];
    }
    const k = JSON.stringify(path);
    if (text === "{}" || text === "[]") {
      const grown = path.length === 0 || [...after.keys()].some((a) => a === k || a.startsWith(k.slice(0, -1) + ","));
      expect(grown, `${k} kept`).toBe(true);
      continue;
    }
    expect(after.get(k), k).toBe(text);
  }
}
