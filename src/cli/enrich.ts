/**
 * `dnsgeo enrich [FILE]`: stdin (or FILE) → stdout in the same framing.
 * NDJSON streams line by line in slices, so `tail -f … | dnsgeo enrich` works;
 * a compressed file or a JSON array is read whole, then enriched in slices.
 * Data only ever goes to stdout; progress and the summary go to stderr.
 */
import { createReadStream } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type { Command } from "commander";
import { Option } from "commander";
import { createApp, type App } from "../app.js";
import { decode, encodeItems } from "../pipeline/framing.js";
import { sniffCompression } from "../codecs/compression.js";
import type { EnrichCounts, EnrichOptions, OutputFormat } from "../pipeline/enrich.js";
import type { Decoded } from "../pipeline/types.js";
import { CliFailure, parsePositiveInt, type CliContext } from "./context.js";

/** Records per lookup batch: big enough to batch provider calls, small enough to stream. */
const SLICE = 1000;

interface EnrichFlags {
  format?: OutputFormat;
  explode?: boolean;
  wait?: boolean;
  deadlineMs?: number;
  progress?: boolean;
}

export function registerEnrich(program: Command, ctx: CliContext): void {
  program
    .command("enrich")
    .description("enrich DNS log records from FILE or stdin to stdout (NDJSON, JSON array or one object; gzip/zstd/snappy detected)")
    .argument("[file]", "input file; stdin when absent or -")
    .addOption(new Option("--format <format>", "output format").choices(["ecs", "quicksight"]))
    .option("--explode", "quicksight: one row per public answer IP")
    .option("--wait", "wait for the provider's full answers instead of the inline deadline")
    .option("--deadline-ms <ms>", "inline lookup budget per slice of records", parsePositiveInt)
    .option("--no-progress", "no progress line on stderr even when it is a terminal")
    .action(async (file: string | undefined, flags: EnrichFlags) => {
      const cfg = ctx.loadConfig();
      const app = await createApp(cfg, { logger: ctx.logger });
      try {
        await runEnrich(app, ctx, file, flags);
      } finally {
        await app.close();
      }
    });
}

class Progress {
  private readonly started = Date.now();
  private lastDraw = 0;
  readonly counts: EnrichCounts = { enriched: 0, partial: 0, pending: 0, skipped: 0, error: 0, unparsed: 0 };
  records = 0;

  constructor(
    private readonly ctx: CliContext,
    private readonly app: App,
    private readonly live: boolean,
  ) {}

  add(counts: EnrichCounts): void {
    for (const k of Object.keys(counts) as Array<keyof EnrichCounts>) {
      this.counts[k] += counts[k];
      this.records += counts[k];
    }
    const now = Date.now();
    if (this.live && now - this.lastDraw > 250) {
      this.lastDraw = now;
      this.ctx.stderr.write(`\r${this.line()}\x1b[K`);
    }
  }

  private line(): string {
    const s = Math.max((Date.now() - this.started) / 1000, 0.001);
    const st = this.app.stats();
    const hit = st.lookups > 0 ? `${Math.round((100 * st.cacheHits) / st.lookups)}%` : "-";
    const budget = st.providerBudget === undefined ? "" : `, provider budget ${st.providerBudget}`;
    return `dnsgeo enrich: ${this.records} records, ${Math.round(this.records / s)}/s, cache hits ${hit}${budget}`;
  }

  finish(): void {
    const c = this.counts;
    if (this.live) this.ctx.stderr.write("\r\x1b[K");
    this.ctx.stderr.write(
      `${this.line()} — enriched ${c.enriched}, partial ${c.partial}, pending ${c.pending}, skipped ${c.skipped}, error ${c.error}, unparsed ${c.unparsed}\n`,
    );
  }
}

async function writeOut(ctx: CliContext, buf: Buffer): Promise<void> {
  if (buf.length === 0) return;
  if (!ctx.stdout.write(buf)) await new Promise<void>((r) => ctx.stdout.once("drain", () => r()));
}

/** Index of the first byte that is not whitespace or part of a UTF-8 BOM. */
function firstNonSpaceAt(b: Buffer): number | undefined {
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09 && c !== 0xef && c !== 0xbb && c !== 0xbf) return i;
  }
  return undefined;
}

/**
 * How to read the input, from its first bytes; undefined while they don't tell yet.
 * Compressed input (its magic needs up to 10 bytes), a JSON array, and an object
 * spread over several lines (pretty-printed) are read whole; NDJSON streams.
 */
function decideMode(head: Buffer): "stream" | "whole" | undefined {
  const first = firstNonSpaceAt(head);
  if (first === undefined) return undefined;
  if (head.length < 10) return undefined;
  if (sniffCompression(head) !== undefined) return "whole";
  const c = head[first];
  if (c === 0x5b /* [ */) return "whole";
  if (c !== 0x7b /* { */) return "stream";
  const nl = head.indexOf(0x0a, first);
  if (nl < 0) return undefined;
  try {
    JSON.parse(head.subarray(first, nl).toString("utf8"));
    return "stream";
  } catch {
    return "whole";
  }
}

/** Streams the input; exported for tests. */
export async function runEnrich(app: App, ctx: CliContext, file: string | undefined, flags: EnrichFlags): Promise<Progress["counts"]> {
  const input: NodeJS.ReadableStream = file && file !== "-" ? createReadStream(file) : ctx.stdin;
  const opts: EnrichOptions = {};
  if (flags.format) opts.format = flags.format;
  if (flags.explode) opts.explode = true;
  if (flags.wait) opts.wait = true;
  if (flags.deadlineMs) opts.deadlineMs = flags.deadlineMs;
  const progress = new Progress(ctx, app, flags.progress !== false && ctx.stderr.isTTY === true);

  const enrichSlice = async (decoded: Decoded): Promise<Buffer> => {
    const res = await app.enricher.enrichDecoded(decoded, opts);
    progress.add(res.counts);
    return encodeItems(res.framing, res.items);
  };

  const chunks: Buffer[] = [];
  // A character split across two chunks must not become two replacement characters.
  const utf8 = new StringDecoder("utf8");
  let mode: "unknown" | "stream" | "whole" = "unknown";
  let pending = "";
  let lines: string[] = [];
  const flushLines = async (): Promise<void> => {
    if (lines.length === 0) return;
    const body = Buffer.from(lines.join("\n") + "\n");
    lines = [];
    await writeOut(ctx, await enrichSlice(decode(body, { contentType: "application/x-ndjson" })));
  };
  const takeLines = async (text: string, final: boolean): Promise<void> => {
    const parts = (pending + text).split("\n");
    pending = final ? "" : (parts.pop() ?? "");
    for (const line of parts) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (lines.length >= SLICE) await flushLines();
    }
  };

  // stdin may be a live stream (`tail -f … | dnsgeo enrich`): what a chunk completes goes out
  // with that chunk. A file is read in full slices, so lookups batch well.
  const live = !(file && file !== "-");
  try {
    for await (const chunk of input as AsyncIterable<Buffer | string>) {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      if (mode === "unknown") {
        chunks.push(buf);
        const head = Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(head);
        const decided = decideMode(head);
        if (decided === undefined) continue;
        mode = decided;
        if (mode === "whole") continue;
        chunks.length = 0;
        await takeLines(utf8.write(head).replace(/^\uFEFF/, ""), false);
      } else if (mode === "whole") {
        chunks.push(buf);
        continue;
      } else await takeLines(utf8.write(buf), false);
      if (live) await flushLines();
    }
  } catch (e) {
    throw new CliFailure(`cannot read ${file ?? "stdin"}: ${(e as Error).message}`, 1);
  }
  // Input that ended before its mode was clear is decoded whole (decode finds the framing).
  if (mode === "unknown") mode = "whole";

  if (mode === "stream") {
    await takeLines(utf8.end(), true);
    await flushLines();
  } else {
    const whole = Buffer.concat(chunks);
    let decoded: Decoded;
    try {
      decoded = decode(whole, {});
    } catch (e) {
      throw new CliFailure(`cannot decode ${file ?? "stdin"}: ${(e as Error).message}`, 1);
    }
    if (decoded.framing === "ndjson") {
      for (let i = 0; i < decoded.items.length; i += SLICE) {
        await writeOut(ctx, await enrichSlice({ framing: "ndjson", items: decoded.items.slice(i, i + SLICE) }));
      }
    } else {
      // Array and single-object framing must come out as one value.
      const res = await app.enricher.enrichDecoded(decoded, opts);
      progress.add(res.counts);
      await writeOut(ctx, encodeItems(res.framing, res.items));
    }
  }
  progress.finish();
  return progress.counts;
}
