/**
 * Which build this is: the version from dnsgeo's own package.json, read at run
 * time from beside the module (so an installed package, the image and a
 * checkout all report what they really hold), and the source commit when it is
 * known: from `build-info.json` next to package.json (written by the image
 * build) or, in a git checkout, from `.git`.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BuildInfo {
  /** package.json `version`. */
  version: string;
  /** Node.js version running dnsgeo, without the leading "v". */
  node: string;
  /** Source commit (hex) when known. */
  commit?: string;
}

/**
 * The package root: the nearest folder up from this module whose package.json
 * is dnsgeo's. The module sits at a different depth under `src/` (tests) and
 * `dist/src/` (built), so the path is found, not fixed.
 */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    const p = join(dir, "package.json");
    if (existsSync(p)) {
      try {
        if ((JSON.parse(readFileSync(p, "utf8")) as { name?: unknown }).name === "dnsgeo") return dir;
      } catch {
        // A package.json that is not JSON is not ours; keep going up.
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`dnsgeo's package.json was not found above ${from}`);
    dir = up;
  }
}

const HEX = /^[0-9a-f]{7,64}$/;

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The commit `.git/HEAD` points at (loose ref or packed-refs); undefined outside a checkout. */
function gitCommit(root: string): string | undefined {
  const head = readText(join(root, ".git", "HEAD"))?.trim();
  if (!head) return undefined;
  if (HEX.test(head)) return head;
  const m = /^ref: (\S+)$/.exec(head);
  if (!m) return undefined;
  const ref = m[1] as string;
  const loose = readText(join(root, ".git", ref))?.trim();
  if (loose && HEX.test(loose)) return loose;
  for (const line of (readText(join(root, ".git", "packed-refs")) ?? "").split("\n")) {
    const [sha, name] = line.trim().split(" ");
    if (name === ref && sha && HEX.test(sha)) return sha;
  }
  return undefined;
}

/** `build-info.json` `{ "commit": "…" }` beside package.json, written by the image build. */
function builtCommit(root: string): string | undefined {
  const text = readText(join(root, "build-info.json"));
  if (text === undefined) return undefined;
  try {
    const c = (JSON.parse(text) as { commit?: unknown }).commit;
    return typeof c === "string" && HEX.test(c.trim().toLowerCase()) ? c.trim().toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/** Version, Node.js version and commit of the dnsgeo package rooted at `root`. */
export function readBuildInfo(root: string): BuildInfo {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string") throw new Error(`${join(root, "package.json")} has no version`);
  const info: BuildInfo = { version: pkg.version, node: process.versions.node };
  const commit = builtCommit(root) ?? gitCommit(root);
  if (commit) info.commit = commit;
  return info;
}

let cached: BuildInfo | undefined;

/** Version, Node.js version and commit of the running build (read once). */
export function buildInfo(): BuildInfo {
  cached ??= readBuildInfo(packageRoot());
  return cached;
}
