/**
 * `extract`: the answer IPs of one record, classified and deduplicated.
 * Pure; never throws.
 */
import { classifyIp } from "./classify.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";

/**
 * Answers repeat across records (the same CDN addresses and CNAME targets), so
 * classifications are remembered: a Map hit is several times cheaper than
 * parsing the text again. Bounded by clearing; entries are frozen because they
 * are shared by every record that has the answer.
 */
const MEMO_MAX = 20_000;
const memo = new Map<string, AnswerIp | null>();

function classifyMemo(text: string): AnswerIp | undefined {
  const hit = memo.get(text);
  if (hit !== undefined) return hit ?? undefined;
  if (typeof text !== "string") return classifyIp(text);
  const a = classifyIp(text);
  if (memo.size >= MEMO_MAX) memo.clear();
  memo.set(text, a ? Object.freeze(a) : null);
  return a;
}

/**
 * Classifies every raw answer of a record in order, drops those that are not
 * IPs (names of a CNAME chain, TXT text…) and keeps the first of answers with
 * the same canonical text (`8.8.8.8` and `::ffff:8.8.8.8` are one answer).
 */
export function extract(rec: ParsedRecord): Extracted {
  const answers: AnswerIp[] = [];
  const raw = Array.isArray(rec.answers) ? rec.answers : [];
  let seen: Set<string> | undefined;
  for (const text of raw) {
    const a = classifyMemo(text);
    if (!a) continue;
    // Records usually hold a handful of answers: a linear scan beats a Set until they don't.
    if (answers.length < 8) {
      let dup = false;
      for (const b of answers) if (b.ip === a.ip) dup = true;
      if (dup) continue;
    } else {
      if (!seen) seen = new Set(answers.map((b) => b.ip));
      if (seen.has(a.ip)) continue;
      seen.add(a.ip);
    }
    answers.push(a);
  }
  return { answers };
}

/** The unique public IPs of a batch of extracted records, in first-seen order: what gets looked up. */
export function publicIps(exs: readonly Extracted[]): string[] {
  const seen = new Set<string>();
  for (const ex of exs) {
    for (const a of ex.answers) if (a.class === "public") seen.add(a.ip);
  }
  return Array.from(seen);
}
