/**
 * What the pipeline asks of the policy rules (`policy.*`): the Enricher asks once per
 * record and hands the answer to the formatters. The inputs are the shapes of the
 * pipeline's `ParsedRecord` and `AnswerIp` that the rules read (structural, so policy/
 * stays below pipeline/).
 */
import type { IpResult } from "../lookup/lookup.js";

/** The parts of a parsed record the rules read. */
export interface PolicyRecord {
  queryName?: string;
  /** The record object (its source address is read for alerts). */
  record: Record<string, unknown>;
}

/** One answer of a record, as `extract` gives it. */
export interface PolicyAnswer {
  ip: string;
  class: "public" | "skipped";
  reason?: string;
}

/** One rule that matched a record: for an answer IP, or (`ip` absent) by the query name alone. */
export interface PolicyHit {
  rule: string;
  tag: string;
  ip?: string;
}

/** What the rules say about one record that matched at least one of them. */
export interface RecordPolicy {
  /** Distinct tags, in rule order. */
  tags: readonly string[];
  /** Every (rule, answer IP) that matched, in answer order then rule order. */
  hits: readonly PolicyHit[];
  /** Per index of the record's answers: the distinct tags of the rules that answer matched. */
  answerTags: ReadonlyArray<readonly string[] | undefined>;
}

export interface PolicyPort {
  /** The record's policy, or undefined when no rule matched (the common case: nothing allocated). */
  match(rec: PolicyRecord, answers: readonly PolicyAnswer[], results: ReadonlyMap<string, IpResult>): RecordPolicy | undefined;
}
