/**
 * `dnsgeo dead-letter list|replay|purge`: the records forward mode's next hop
 * refused (see src/transport/dead-letter.ts for the file's format).
 */
import { unlink } from "node:fs/promises";
import type { Command } from "commander";
import { deadLetterPath, type Config } from "../config.js";
import type { Logger } from "../observability/logger.js";
import { createMetrics } from "../observability/metrics.js";
import { finishReplay, readDeadLetters, takeForReplay, type DeadLetteredRecord } from "../transport/dead-letter.js";
import { encodeBatch, Forwarder } from "../transport/forwarder.js";
import type { EncodableItem } from "../pipeline/types.js";
import { CliFailure, type CliContext } from "./context.js";

/** The file and what an interrupted replay left beside it. */
function files(cfg: Readonly<Config>): { path: string; aside: string } {
  const path = deadLetterPath(cfg);
  return { path, aside: `${path}.replay` };
}

/** Prints every dead-lettered record, one NDJSON line each, as stored. Returns the exit code. */
export async function deadLetterList(cfg: Readonly<Config>, out: NodeJS.WritableStream): Promise<number> {
  const { path, aside } = files(cfg);
  for (const f of [aside, path]) {
    const { lines } = await readDeadLetters(f);
    for (const line of lines) out.write(line + "\n");
  }
  return 0;
}

/** Deletes the file (and a replay's leftovers); prints how many records went. */
export async function deadLetterPurge(cfg: Readonly<Config>, out: NodeJS.WritableStream): Promise<number> {
  const { path, aside } = files(cfg);
  let deleted = 0;
  for (const f of [aside, path]) {
    deleted += (await readDeadLetters(f)).records.length;
    await unlink(f).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
  }
  out.write(JSON.stringify({ path, deleted }) + "\n");
  return 0;
}

function itemOf(r: DeadLetteredRecord): EncodableItem {
  // The stored text goes out byte for byte: JSON as a ready text, anything else as an unparsed line.
  try {
    JSON.parse(r.text);
    return { kind: "jsontext", parts: [r.text] };
  } catch {
    return { kind: "unparsed", raw: r.text };
  }
}

/**
 * Sends the dead-lettered records to `forward.url` again, in order, with the same
 * splitting as `serve`. Accepted records leave the file; refused ones stay with
 * the new answer; after a failure (next hop down) the rest stay untouched.
 * Exit code 0 only when the file ended up empty.
 */
export async function deadLetterReplay(cfg: Readonly<Config>, out: NodeJS.WritableStream, logger: Logger): Promise<number> {
  if (!cfg.forward.url) throw new CliFailure("forward.url is not set: nowhere to replay to (config key forward.url, env DNSGEO_FORWARD_URL)", 1);
  const { path } = files(cfg);
  const aside = await takeForReplay(path);
  const { records, skipped } = await readDeadLetters(aside);
  if (skipped > 0) logger.warn({ lines: skipped }, "dead-letter: lines that are not dead-lettered records were dropped from the file");
  const forwarder = new Forwarder(cfg.forward, { logger, metrics: createMetrics() });
  let keep: DeadLetteredRecord[] = [];
  let delivered = 0;
  let refused = 0;
  let detail: string | undefined;
  try {
    if (records.length > 0) {
      const framing = forwarder.framingFor("ndjson");
      const batch = encodeBatch(framing, records.map(itemOf));
      const o = await forwarder.deliver(batch);
      const time = new Date().toISOString();
      const refusedAt = new Map(o.refused.map((r) => [r.index, r]));
      const end = o.unavailable ? o.unavailable.from : records.length;
      for (let i = 0; i < records.length; i++) {
        const rec = records[i] as DeadLetteredRecord;
        const r = refusedAt.get(i);
        if (r) keep.push({ text: rec.text, reason: { status: r.status, answer: r.detail, time } });
        else if (i >= end) keep.push(rec);
      }
      delivered = o.delivered;
      refused = o.refused.length;
      detail = o.unavailable?.detail;
    }
  } catch (e) {
    // Never lose what was taken aside: on any failure every record goes back.
    keep = records;
    detail = e instanceof Error ? e.message : String(e);
  } finally {
    await forwarder.close();
    await finishReplay(path, aside, keep);
  }
  out.write(JSON.stringify(Object.assign({ path, records: records.length, delivered, refused_again: refused, left: keep.length }, detail ? { error: detail } : {})) + "\n");
  return keep.length === 0 ? 0 : 1;
}

/** Registers `dead-letter list|replay|purge`. */
export function registerDeadLetter(program: Command, ctx: CliContext): void {
  const dl = program
    .command("dead-letter")
    .description("the records forward mode's next hop refused (forward.dead_letter.path, default ${data_dir}/forward-dead-letter.ndjson)");
  dl.command("list")
    .description("print every refused record as NDJSON: the record as it would have been forwarded, with the reason under dnsgeo_dead_letter")
    .action(async () => {
      await deadLetterList(ctx.loadConfig(), ctx.stdout);
    });
  dl.command("replay")
    .description("send the refused records to forward.url again; accepted ones leave the file (exit 1 when some are left)")
    .action(async () => {
      const code = await deadLetterReplay(ctx.loadConfig(), ctx.stdout, ctx.logger);
      if (code !== 0) throw new CliFailure("some dead-lettered records were not delivered; they stay in the file (see the summary line)", code);
    });
  dl.command("purge")
    .description("delete every refused record")
    .action(async () => {
      await deadLetterPurge(ctx.loadConfig(), ctx.stdout);
    });
}
