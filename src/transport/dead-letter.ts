/**
 * Forward mode's dead-letter file: the enriched records a next hop refused for
 * good (a 4xx other than 408/429, or a 413 for one record alone), kept on disk so
 * the shipper's batch can be acknowledged without losing them.
 *
 * One NDJSON line per record, readable as it is (`dnsgeo dead-letter list` prints
 * the lines unchanged):
 * - a record that is a JSON object is written as that object with one more key,
 *   `dnsgeo_dead_letter: {status, answer, time}` (the next hop's status, the first
 *   512 bytes of its answer, when it was refused), appended at the end of its text;
 * - anything else (a line that is not JSON, an array) as
 *   `{"dnsgeo_dead_letter": {status, answer, time, record_text}}`.
 * The record's own text is never re-serialized: replay strips the appended key
 * and sends the bytes the next hop would have got.
 */
import { mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/** The key a dead-lettered record carries. */
export const DEAD_LETTER_KEY = "dnsgeo_dead_letter";

/** Longest piece of the next hop's answer kept with a refused record. */
export const DEAD_LETTER_ANSWER_MAX = 512;

export interface DeadLetterReason {
  /** The next hop's HTTP status. */
  status: number;
  /** The first 512 bytes of its answer. */
  answer: string;
  /** ISO 8601 time of the refusal. */
  time: string;
}

export interface DeadLetteredRecord {
  /** The record's text exactly as it would have been forwarded. */
  text: string;
  reason: DeadLetterReason;
}

const MARK = `"${DEAD_LETTER_KEY}":{`;

function isJsonObjectText(text: string): boolean {
  const t = text.trim();
  if (!t.startsWith("{") || !t.endsWith("}")) return false;
  try {
    const v: unknown = JSON.parse(t);
    return typeof v === "object" && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

/** The file line (without the newline) for one refused record. */
export function deadLetterLine(text: string, reason: DeadLetterReason): string {
  const r = { status: reason.status, answer: reason.answer.slice(0, DEAD_LETTER_ANSWER_MAX), time: reason.time };
  if (isJsonObjectText(text)) {
    const t = text.trim();
    const inner = t.slice(0, -1).trimEnd();
    const sep = inner.endsWith("{") ? "" : ",";
    return `${inner}${sep}"${DEAD_LETTER_KEY}":${JSON.stringify(r)}}`;
  }
  return JSON.stringify({ [DEAD_LETTER_KEY]: Object.assign(r, { record_text: text }) });
}

/** Reads one file line back; undefined for a line dnsgeo did not write. */
export function parseDeadLetterLine(line: string): DeadLetteredRecord | undefined {
  let doc: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    doc = v as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const dl = doc[DEAD_LETTER_KEY] as Record<string, unknown> | undefined;
  if (typeof dl !== "object" || dl === null) return undefined;
  const reason: DeadLetterReason = {
    status: typeof dl.status === "number" ? dl.status : 0,
    answer: typeof dl.answer === "string" ? dl.answer : "",
    time: typeof dl.time === "string" ? dl.time : "",
  };
  if (typeof dl.record_text === "string" && Object.keys(doc).length === 1) return { text: dl.record_text, reason };
  // The key was appended last: cut from its last occurrence (any earlier one is the record's own text).
  const at = line.lastIndexOf(MARK);
  if (at < 0) return undefined;
  let head = line.slice(0, at).trimEnd();
  if (head.endsWith(",")) head = head.slice(0, -1);
  return { text: `${head}}`, reason };
}

export type AppendResult = { ok: true; bytes: number } | { ok: false; detail: string };

/**
 * Appends refused records, bounded by `maxBytes`; appends are serialized and each is
 * flushed to disk (fdatasync) before it resolves, because the shipper is told the
 * batch is done as soon as it does.
 */
export class DeadLetterFile {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly maxBytes: number,
  ) {}

  /** Current size of the file in bytes (0 when it does not exist). */
  async size(): Promise<number> {
    try {
      return (await stat(this.path)).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw e;
    }
  }

  /** Writes all of `records` or none of them. */
  append(records: readonly DeadLetteredRecord[]): Promise<AppendResult> {
    const run = this.chain.then(() => this.write(records));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async write(records: readonly DeadLetteredRecord[]): Promise<AppendResult> {
    const body = Buffer.from(records.map((r) => deadLetterLine(r.text, r.reason) + "\n").join(""), "utf8");
    let size: number;
    try {
      size = await this.size();
    } catch (e) {
      return { ok: false, detail: `cannot read the dead-letter file (${(e as NodeJS.ErrnoException).code ?? String(e)})` };
    }
    if (size + body.length > this.maxBytes) {
      return { ok: false, detail: `the dead-letter file is full (${size} of forward.dead_letter.max_bytes ${this.maxBytes} bytes; see dnsgeo dead-letter list/replay/purge)` };
    }
    try {
      await mkdir(dirname(this.path), { recursive: true });
      await appendSynced(this.path, body);
    } catch (e) {
      return { ok: false, detail: `cannot write the dead-letter file (${(e as NodeJS.ErrnoException).code ?? String(e)})` };
    }
    return { ok: true, bytes: size + body.length };
  }
}

/** Every record in the file at `path`, in order; lines dnsgeo did not write are returned as `skipped`. */
export async function readDeadLetters(path: string): Promise<{ records: DeadLetteredRecord[]; lines: string[]; skipped: number }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { records: [], lines: [], skipped: 0 };
    throw e;
  }
  const records: DeadLetteredRecord[] = [];
  const lines: string[] = [];
  let skipped = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const r = parseDeadLetterLine(line);
    if (r) {
      records.push(r);
      lines.push(line);
    } else skipped++;
  }
  return { records, lines, skipped };
}

/**
 * Moves the file aside for a replay (rename: atomic), so records a running server
 * dead-letters meanwhile go to a new file and are not lost when the replay writes
 * back what is left. A replay file left by an interrupted replay is taken up too.
 * A server opens the file only for the moment of one append; `settleMs` waits out
 * an append that opened the file just before the rename.
 */
export async function takeForReplay(path: string, settleMs = 500): Promise<string> {
  const aside = `${path}.replay`;
  const fresh = `${path}.replay-${process.pid}`;
  try {
    await rename(path, fresh);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    return aside;
  }
  await new Promise((r) => setTimeout(r, settleMs));
  await appendSynced(aside, await readFile(fresh));
  await unlink(fresh);
  return aside;
}

async function appendSynced(path: string, body: Buffer | string): Promise<void> {
  const fh = await open(path, "a", 0o600);
  try {
    await fh.writeFile(body);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Puts records back at the end of the file (refused again or never tried), then removes the aside file. */
export async function finishReplay(path: string, aside: string, keep: readonly DeadLetteredRecord[]): Promise<void> {
  if (keep.length > 0) await appendSynced(path, keep.map((r) => deadLetterLine(r.text, r.reason) + "\n").join(""));
  await unlink(aside).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
}
