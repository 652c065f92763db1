/**
 * Record and answer status from the per-IP lookup results (`dnsgeo.status`).
 * Shared by the ECS and QuickSight formatters.
 */
import type { Entry, IpResult } from "../lookup/lookup.js";
import type { AnswerIp, Extracted, RecordKind } from "./types.js";

/** `dnsgeo.status` vocabulary. */
export type RecordStatus = "enriched" | "partial" | "pending" | "skipped" | "error";

/** A record's status and, when it needs one, why. */
export interface StatusResult {
  status: RecordStatus;
  /** `no_answers` | `no_public_answers` | `unknown_record` (skipped) | `lookup_failed` (error). */
  reason?: string;
}

/**
 * Status of one record:
 * - no public answers → `skipped` (`no_answers` when there are no IP answers,
 *   `no_public_answers` when all are special-purpose; `unknown_record` when
 *   `kind` is "unknown"). Skipped wins over `failed`: nothing had to be looked up.
 * - `failed` (the lookup itself failed) → `error` (`lookup_failed`).
 * - every public answer `final` → `enriched` (a final negative or absent entry counts as done).
 * - some public answer has an entry but not all are final → `partial`.
 * - no public answer has an entry and some are not final → `pending`.
 * An IP missing from `results` counts as `{ final: false }`.
 */
export function recordStatus(
  ex: Extracted,
  results: ReadonlyMap<string, IpResult>,
  failed?: boolean,
  kind?: RecordKind,
): StatusResult {
  let publics = 0;
  let allFinal = true;
  let anyEntry = false;
  for (const a of ex.answers) {
    if (a.class !== "public") continue;
    publics++;
    const r = results.get(a.ip);
    if (!r || !r.final) allFinal = false;
    if (r?.entry) anyEntry = true;
  }
  if (publics === 0) {
    const reason = kind === "unknown" ? "unknown_record" : ex.answers.length === 0 ? "no_answers" : "no_public_answers";
    return { status: "skipped", reason };
  }
  if (failed) return { status: "error", reason: "lookup_failed" };
  if (allFinal) return { status: "enriched" };
  return { status: anyEntry ? "partial" : "pending" };
}

/** What the formatters show for one answer. */
export interface AnswerView {
  /** Positive entry to show (possibly stale or offline), when there is one. */
  entry?: Entry;
  /** `not_found` (final, negative or absent), `pending`, `lookup_failed`, or a SkipReason. */
  reason?: string;
}

/** How one answer is shown: its positive entry, or why there is none. */
export function answerView(a: AnswerIp, results: ReadonlyMap<string, IpResult>, failed?: boolean): AnswerView {
  if (a.class !== "public") return { reason: a.reason ?? "special_purpose" };
  const r = results.get(a.ip);
  const e = r?.entry;
  if (e && !e.neg && e.geo) return { entry: e };
  if (e || r?.final) return { reason: "not_found" };
  return { reason: failed ? "lookup_failed" : "pending" };
}
