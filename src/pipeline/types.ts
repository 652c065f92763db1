/**
 * Data that travels between the pure pipeline stages:
 * decode → parse → extract → (lookup) → format → encode.
 */

/** How a body was framed; the response uses the same framing. */
export type Framing = "ndjson" | "array" | "object";

/** One item out of `decode`: a JSON value, or a line that is not JSON (passed through as is). */
export type DecodedItem =
  /**
   * `text`: the exact source text of the value (an NDJSON line, an array element, the
   * whole document); the output is built from it, so every original value comes back
   * as it was written (see json-text.ts).
   */
  | {
      kind: "json";
      value: unknown;
      text?: string;
      /**
       * The request body when it is ASCII, with `text` at byte offset `at`:
       * lets the encoder copy the line's bytes instead of encoding its text.
       */
      src?: Buffer;
      at?: number;
    }
  | UnparsedLine;

/**
 * A line that is not JSON, passed through unchanged. `bytes`: the line's own bytes when
 * they are not valid UTF-8 (`raw` then holds U+FFFD where they were): written instead
 * of `raw`, so such a line comes back byte for byte.
 */
export interface UnparsedLine {
  kind: "unparsed";
  raw: string;
  bytes?: Buffer;
}

/** Output only: a value already serialized as JSON text, in pieces (the ECS fast path). */
export interface JsonText {
  kind: "jsontext";
  /**
   * Concatenated, the JSON text. A Buffer piece is UTF-8 text already encoded (a cached
   * text of a lookup entry): its `toString()` is the text, so `parts.join("")` still works.
   */
  parts: readonly (string | Buffer)[];
  /**
   * `parts[0]` as bytes, when known: `headSrc[headAt, headAt + parts[0].length)`
   * (ASCII, from the request body). Written by copy instead of encoding.
   */
  headSrc?: Buffer;
  headAt?: number;
}

/** What `encodeItems` writes. */
export type EncodableItem = DecodedItem | JsonText;

export interface Decoded {
  framing: Framing;
  items: DecodedItem[];
}

/** Closed vocabulary of record kinds (also a metric label). */
export type RecordKind =
  | "route53"
  | "dns_firewall"
  | "ecs"
  | "zeek"
  | "sysmon"
  | "ocsf"
  | "custom"
  | "unknown";

/**
 * One DNS log record found by `parse` (envelopes already unwrapped).
 * `record` is the object the output is built on; its original fields are never
 * changed or removed by later stages.
 */
export interface ParsedRecord {
  kind: RecordKind;
  /** The record object (for envelopes: the inner event's parsed message). */
  record: Record<string, unknown>;
  /** The queried name, when the kind has one. */
  queryName?: string;
  /** Raw answer candidates in answer order (strings that may or may not be IPs; names included). */
  answers: string[];
  /**
   * Where an envelope carried this record (CloudWatch Logs subscription: the log
   * group/stream, account and the log event's id and epoch-ms timestamp). Absent for
   * records that arrived on their own. Format may add it to the output.
   */
  envelope?: RecordEnvelope;
  /**
   * The record's own JSON text (the decoded line, array element or document, or an
   * envelope event's message), when known: output is built from it (lossless).
   * `src`/`at`: the same text as bytes of the request body (ASCII), for copying.
   */
  text?: string;
  src?: Buffer;
  at?: number;
  /** True when the record is the decoded item's value itself (no envelope around it, nothing else in the item). */
  whole?: boolean;
}

/** Metadata of the envelope a record came in (see `ParsedRecord.envelope`). */
export interface RecordEnvelope {
  logGroup?: string;
  logStream?: string;
  /** AWS account id of the log group (`owner`). */
  owner?: string;
  /** Log event id. */
  id?: string;
  /** Log event time, epoch milliseconds. */
  timestamp?: number;
}

/**
 * One item out of `parse`: a DNS record, or a value to pass through untouched
 * (not an object, an unparsed line, a CloudWatch control message gives none).
 */
export type ParsedItem =
  | { kind: "record"; rec: ParsedRecord }
  | { kind: "passthrough"; value: unknown; reason: "not_object" | "unparsed"; text?: string }
  | UnparsedLine;

/** Why an answer is not looked up (closed vocabulary). */
export type SkipReason =
  | "private"
  | "loopback"
  | "link_local"
  | "cgnat"
  | "documentation"
  | "benchmarking"
  | "multicast"
  | "reserved"
  | "unspecified"
  | "broadcast"
  | "unique_local"
  | "6to4_relay"
  | "teredo"
  | "nat64"
  | "special_purpose"
  | "zone_id"
  | "not_canonical";

/** One answer IP of a record after extraction and classification. */
export interface AnswerIp {
  /** Canonical IP text (or the raw text when it is not canonical). */
  ip: string;
  /** `public` answers are looked up; `skipped` ones never reach a provider. */
  class: "public" | "skipped";
  reason?: SkipReason;
  /** `resolve`: not in the record's DNS answer; found by the optional resolve step (`resolve.mode`). */
  via?: "resolve";
}

/** Output of `extract` for one record. */
export interface Extracted {
  /** Deduplicated answer IPs in answer order (public and skipped). */
  answers: AnswerIp[];
}

/**
 * Names → IPs, for records whose answers are names (`resolve.*`). The pipeline
 * defines this port; `resolve/resolver.ts` implements it with DNS.
 */
export interface NameLookup {
  /**
   * The IPs of each distinct name that resolved (or was cached) within
   * `deadlineMs`. Names not answered by then are absent (their queries go on
   * and fill the cache). Never rejects.
   */
  resolveMany(names: Iterable<string>, deadlineMs: number): Promise<Map<string, readonly string[]>>;
}
