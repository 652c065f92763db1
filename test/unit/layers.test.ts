/**
 * The layers of docs/architecture.md, checked on the source: each folder of src/ imports
 * only the folders below it, so no two folders import each other and nothing in the core
 * reaches up into a transport, the wiring (app.ts) or the command line.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");

/** What each part of src/ may import, besides itself. Files at the top of src/ are parts of their own. */
const ALLOWED: Record<string, readonly string[]> = {
  "version.ts": [],
  "codecs": ["errors.ts"],
  "errors.ts": [],
  "observability": ["version.ts"],
  "config.ts": ["errors.ts", "observability"],
  "lookup": ["config.ts", "errors.ts", "observability", "codecs"],
  "policy": ["config.ts", "errors.ts", "observability", "lookup"],
  "pipeline": ["config.ts", "errors.ts", "observability", "codecs", "lookup", "policy"],
  "resolve": ["config.ts", "errors.ts", "observability", "lookup", "pipeline"],
  "app.ts": ["config.ts", "errors.ts", "observability", "codecs", "lookup", "policy", "pipeline", "resolve", "version.ts"],
  "transport": ["config.ts", "errors.ts", "observability", "codecs", "lookup", "policy", "pipeline", "resolve", "app.ts", "version.ts"],
  "cli": ["config.ts", "errors.ts", "observability", "codecs", "lookup", "policy", "pipeline", "resolve", "app.ts", "transport", "version.ts"],
  "main.ts": ["cli", "config.ts", "errors.ts", "observability", "version.ts"],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** The part of src/ a file belongs to: its top folder, or its own name at the top. */
const partOf = (file: string): string => relative(SRC, file).split("/")[0] as string;

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/g)) {
    out.push(resolve(dirname(file), (m[1] as string).replace(/\.js$/, ".ts")));
  }
  return out;
}

describe("layers", () => {
  it("every part of src/ is in the table, and each imports only the parts below it", () => {
    const wrong: string[] = [];
    for (const file of files(SRC)) {
      const part = partOf(file);
      const allowed = ALLOWED[part];
      if (allowed === undefined) {
        wrong.push(`${relative(SRC, file)}: part "${part}" is not in the layer table`);
        continue;
      }
      for (const target of imports(file)) {
        const to = partOf(target);
        if (to !== part && !allowed.includes(to)) wrong.push(`${relative(SRC, file)} imports ${relative(SRC, target)}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the table has no cycle (a part never allows one that allows it back)", () => {
    for (const [part, allowed] of Object.entries(ALLOWED)) {
      for (const below of allowed) expect(ALLOWED[below] ?? [], `${part} ↔ ${below}`).not.toContain(part);
    }
  });
});
