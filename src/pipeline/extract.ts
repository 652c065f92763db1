/**
 * `extract`: the answer IPs of one record, classified and deduplicated.
 * Pure; never throws.
 */
import { classifyIp } from "./classify.js";
import type { AnswerIp, Extracted, ParsedRecord } from "./types.js";

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
    const a = classifyIp(text);
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
