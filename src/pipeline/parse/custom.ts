/**
 * Records of no known kind: answers come from the configured `input.ip_fields`
 * dotted paths. At each level the literal dotted key is tried too, so
 * `id.resp_h` finds both `{"id":{"resp_h":…}}` and `{"id.resp_h":…}`.
 */
import type { ParsedRecord } from "../types.js";
import type { JsonObject } from "./common.js";
import { isObject } from "./common.js";

const compiled = new WeakMap<readonly string[], string[][]>();

function segmentsOf(ipFields: readonly string[]): string[][] {
  let segs = compiled.get(ipFields);
  if (segs === undefined) {
    segs = ipFields.map((f) => f.split("."));
    compiled.set(ipFields, segs);
  }
  return segs;
}

/** Value at `segs[from..]` under `o`, longest literal key first; undefined when absent. */
function lookupPath(o: JsonObject, segs: readonly string[], from: number): unknown {
  for (let to = segs.length; to > from; to--) {
    const key = to === from + 1 ? (segs[from] as string) : segs.slice(from, to).join(".");
    if (!Object.prototype.hasOwnProperty.call(o, key)) continue;
    const v = o[key];
    if (to === segs.length) return v;
    if (isObject(v)) {
      const found = lookupPath(v, segs, to);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/**
 * Kind `custom` when at least one path exists (strings and string arrays become
 * answers), else kind `unknown` with no answers (format marks it skipped).
 */
export function parseCustom(o: JsonObject, ipFields: readonly string[]): ParsedRecord {
  const answers: string[] = [];
  let found = false;
  if (ipFields.length > 0) {
    for (const segs of segmentsOf(ipFields)) {
      const v = lookupPath(o, segs, 0);
      if (v === undefined) continue;
      found = true;
      if (typeof v === "string") answers.push(v);
      else if (Array.isArray(v)) {
        for (const x of v) if (typeof x === "string") answers.push(x);
      }
    }
  }
  return { kind: found ? "custom" : "unknown", record: o, answers };
}
