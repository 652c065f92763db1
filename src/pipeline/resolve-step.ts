/**
 * The `resolve` step between `extract` and `lookup`: adds the IPs of a
 * record's query name to its answers, marked `via: "resolve"`.
 *
 * - `missing`: only records with no IP answer at all (DNS Firewall BLOCK, a
 *   CNAME-only answer); `always`: every record with a query name.
 * - Each distinct name is resolved once per batch, and the whole phase waits at
 *   most `deadlineMs`; names not answered by then are left as they are (their
 *   queries go on and fill the resolver's cache for later records).
 * - Resolved IPs are classified like any answer: special-purpose ones are
 *   `skipped` and never reach a provider. An IP the record already has is not
 *   added again.
 */
import { classifyIp } from "./classify.js";
import type { AnswerIp, Extracted, NameLookup, ParsedItem } from "./types.js";

/** `resolve.mode` values that do something. */
export type ResolveMode = "missing" | "always";

function wants(ex: Extracted, mode: ResolveMode): boolean {
  return mode === "always" || ex.answers.length === 0;
}

/**
 * Appends resolved answers to `extracted[i]` for each record `items[i]` that
 * the mode selects; returns how many answers were added. Never rejects.
 */
export async function addResolvedAnswers(
  items: readonly ParsedItem[],
  extracted: ReadonlyArray<Extracted | undefined>,
  resolver: NameLookup,
  mode: ResolveMode,
  deadlineMs: number,
): Promise<number> {
  const names = new Set<string>();
  for (let i = 0; i < items.length; i++) {
    const p = items[i];
    const ex = extracted[i];
    if (p?.kind !== "record" || ex === undefined) continue;
    const q = p.rec.queryName;
    if (typeof q === "string" && q !== "" && wants(ex, mode)) names.add(q);
  }
  if (names.size === 0) return 0;
  let resolved: Map<string, readonly string[]>;
  try {
    resolved = await resolver.resolveMany(names, deadlineMs);
  } catch {
    // resolveMany promises never to reject; should it, records flow on as extracted.
    return 0;
  }
  let added = 0;
  for (let i = 0; i < items.length; i++) {
    const p = items[i];
    const ex = extracted[i];
    if (p?.kind !== "record" || ex === undefined) continue;
    const q = p.rec.queryName;
    if (typeof q !== "string" || !wants(ex, mode)) continue;
    const ips = resolved.get(q);
    if (ips === undefined) continue;
    for (const ip of ips) {
      const c = classifyIp(ip);
      if (!c) continue;
      let dup = false;
      for (const b of ex.answers) if (b.ip === c.ip) dup = true;
      if (dup) continue;
      const a: AnswerIp = { ip: c.ip, class: c.class, via: "resolve" };
      if (c.reason !== undefined) a.reason = c.reason;
      ex.answers.push(a);
      added++;
    }
  }
  return added;
}
