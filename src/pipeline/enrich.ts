/**
 * The pipeline in one place: decode → parse → extract → lookup → format → encode.
 * Only `lookup` (through the injected GeoService) does I/O; everything else is pure.
 * A bad record never fails the others and no record is dropped: every input record
 * comes back, enriched or with a status saying why not.
 */
import type { Config } from "../config.js";
import type { GeoService, IpResult } from "../lookup/lookup.js";
import type { Metrics } from "../observability/metrics.js";
import type { Logger } from "../observability/logger.js";
import { decode, encodeItems } from "./framing.js";
import { parse } from "./parse.js";
import { extract, publicIps } from "./extract.js";
import { formatEcs, formatEcsPacked, formatEcsText, passthroughEcs } from "./format-ecs.js";
import type { MsgpackWriter } from "../codecs/msgpack-writer.js";
import { atRisk, mergedText, trimmedSpan } from "./json-text.js";
import { isPlain } from "./plain-object.js";
import { formatQuicksight, passthroughQuicksight } from "./format-quicksight.js";
import { recordStatus, type StatusResult } from "./status.js";
import { addResolvedAnswers } from "./resolve-step.js";
import type { Pause } from "./slices.js";
import type { PolicyPort, RecordPolicy } from "../policy/types.js";
import type { Decoded, DecodedItem, EncodableItem, Extracted, Framing, NameLookup, ParsedItem, ParsedRecord } from "./types.js";

export type OutputFormat = Config["output"]["format"];

/** Per-request choices; anything unset comes from `output.*` in the config. */
export interface EnrichOptions {
  format?: OutputFormat;
  explode?: boolean;
  /** Overrides `lookup.deadline_ms`. */
  deadlineMs?: number;
  /** Wait for final provider answers (CLI `--wait`). */
  wait?: boolean;
  /** Given for large batches: the work is done in slices, yielding to the event loop between them. */
  pause?: Pause;
}

/** One output item: a JSON value, JSON text already serialized, or an unparsed line passed through as is. */
export type OutputItem = EncodableItem;

/**
 * An output item of `enrichPacked`: the keys the ECS formatter adds to a record, as
 * `count` msgpack key/value pairs in `[from, to)` of the writer's bytes, to be appended
 * to the record's own msgpack map.
 */
export interface PackedAdded {
  kind: "msgpack";
  count: number;
  from: number;
  to: number;
}

export type RecordResult = "enriched" | "partial" | "pending" | "skipped" | "error" | "unparsed";

/** Counts of one call, by result (records, not rows: an exploded record counts once). */
export type EnrichCounts = Record<RecordResult, number>;

export interface EnrichOutput {
  framing: Framing;
  items: OutputItem[];
  counts: EnrichCounts;
  /** Distinct public IPs looked up in this call. */
  lookedUp: number;
}

export interface EnricherDeps {
  geo: GeoService;
  config: Readonly<Config>;
  metrics?: Metrics;
  logger?: Logger;
  /** Used when `resolve.mode` is not `off`: adds the query name's IPs (`via: "resolve"`). */
  resolver?: NameLookup;
  /** Policy rules (`policy.*`): tags of the rules each record's answers match. */
  policy?: PolicyPort;
}

function emptyCounts(): EnrichCounts {
  return { enriched: 0, partial: 0, pending: 0, skipped: 0, error: 0, unparsed: 0 };
}

const NO_RESULTS: ReadonlyMap<string, IpResult> = new Map();

/** Records of a large batch (one enriched in slices) taken through the whole pipeline at a time. */
const LARGE_BATCH_PART = 8192;

/** What `formatRange` works on: one call's records and what was found for them. */
interface FormatRun {
  parsed: readonly ParsedItem[];
  extracted: ReadonlyArray<Extracted | undefined>;
  format: OutputFormat;
  out: Config["output"];
  results: ReadonlyMap<string, IpResult>;
  failed: boolean;
  counts: EnrichCounts;
  items: Array<OutputItem | PackedAdded>;
  /** Set by `enrichPacked`: where the added keys of a whole record are written. */
  packed: MsgpackWriter | undefined;
}

/** Runs the pipeline for decoded batches; one instance per process. */
export class Enricher {
  private readonly geo: GeoService;
  private readonly cfg: Readonly<Config>;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger | undefined;
  private readonly parseOpts: { ipFields: readonly string[] };
  private readonly resolver: NameLookup | undefined;
  private readonly policy: PolicyPort | undefined;

  constructor(deps: EnricherDeps) {
    this.geo = deps.geo;
    this.cfg = deps.config;
    this.metrics = deps.metrics;
    this.logger = deps.logger;
    this.parseOpts = { ipFields: deps.config.input.ip_fields };
    this.resolver = deps.config.resolve.mode === "off" ? undefined : deps.resolver;
    this.policy = deps.policy;
  }

  /**
   * Parses decoded items into records and pass-through items (pure). A record keeps
   * its own source text (`rec.text`) where it is known, for lossless output.
   */
  parseItems(items: readonly DecodedItem[]): ParsedItem[] {
    const out: ParsedItem[] = [];
    this.parseRange(items, 0, items.length, out);
    return out;
  }

  /** `parseItems` of `items[from, to)`, appended to `out`. */
  private parseRange(items: readonly DecodedItem[], from: number, to: number, out: ParsedItem[]): void {
    for (let k = from; k < to; k++) {
      const item = items[k] as DecodedItem;
      let parsed: ParsedItem[];
      try {
        parsed = parse(item, this.parseOpts);
      } catch (e) {
        // parse promises never to throw; if it ever does, the record still flows.
        this.logger?.error({ err: e }, "parse threw; record passed through");
        parsed = item.kind === "json" ? [item.text === undefined ? { kind: "passthrough", value: item.value, reason: "not_object" } : { kind: "passthrough", value: item.value, reason: "not_object", text: item.text }] : [item];
      }
      for (const p of parsed) out.push(p);
    }
  }

  /** Enriches decoded items; never rejects because a tier or provider is down. */
  async enrichDecoded(decoded: Decoded, opts: EnrichOptions = {}): Promise<EnrichOutput> {
    return (await this.run(decoded, opts, undefined)) as EnrichOutput;
  }

  /**
   * `enrichDecoded` for items decoded from msgpack (the forward listener): in ECS format,
   * a record that is an item's whole value and holds none of the keys dnsgeo owns comes
   * back as a `PackedAdded` (its added keys written into `w` as msgpack), for the caller
   * to append to the record's own bytes; any other item as `enrichDecoded` gives it.
   */
  async enrichPacked(decoded: Decoded, w: MsgpackWriter, opts: EnrichOptions = {}): Promise<Omit<EnrichOutput, "items"> & { items: Array<OutputItem | PackedAdded> }> {
    return this.run(decoded, opts, w);
  }

  private async run(decoded: Decoded, opts: EnrichOptions, packed: MsgpackWriter | undefined): Promise<Omit<EnrichOutput, "items"> & { items: Array<OutputItem | PackedAdded> }> {
    const format = opts.format ?? this.cfg.output.format;
    const out = format === "quicksight" ? { ...this.cfg.output, explode: opts.explode ?? this.cfg.output.explode } : this.cfg.output;
    const counts = emptyCounts();
    const items: Array<OutputItem | PackedAdded> = [];
    const all = decoded.items;
    let lookedUp: number;
    if (opts.pause === undefined) lookedUp = (await this.runPart(all, 0, all.length, opts, { format, out, counts, items, packed })).length;
    else {
      // A large batch is enriched a part at a time (parse, look up, format), so only one
      // part's record objects are alive at once and the garbage collector marks one part,
      // not the whole batch. One lookup per part; IPs are counted once across parts.
      const seen = new Set<string>();
      for (let from = 0; from < all.length; from += LARGE_BATCH_PART) {
        for (const ip of await this.runPart(all, from, Math.min(all.length, from + LARGE_BATCH_PART), opts, { format, out, counts, items, packed })) seen.add(ip);
      }
      lookedUp = seen.size;
    }
    if (this.metrics) {
      for (const [k, v] of Object.entries(counts)) if (v > 0) this.metrics.records.inc({ result: k }, v);
    }
    return { framing: decoded.framing, items, counts, lookedUp };
  }

  /**
   * Parses, extracts, resolves, looks up and formats `all[from, to)`, appending to
   * `run.items` and `run.counts`; with `opts.pause`, each loop gives the event loop back
   * when its slice is due. Returns the public IPs it looked up.
   */
  private async runPart(
    all: readonly DecodedItem[],
    from: number,
    to: number,
    opts: EnrichOptions,
    run: Pick<FormatRun, "format" | "out" | "counts" | "items" | "packed">,
  ): Promise<readonly string[]> {
    const pause = opts.pause;
    const parsed: ParsedItem[] = [];
    if (pause === undefined) this.parseRange(all, from, to, parsed);
    else {
      for (let i = from; i < to; i += 256) {
        this.parseRange(all, i, Math.min(to, i + 256), parsed);
        if (pause.isDue()) await pause.due();
      }
    }
    const extracted: Array<Extracted | undefined> = new Array(parsed.length);
    const exs: Extracted[] = [];
    // The loops over records are synchronous methods, so the one-run path has no await in them.
    if (pause === undefined) this.extractRange(parsed, 0, parsed.length, extracted, exs);
    else {
      for (let i = 0; i < parsed.length; i += 256) {
        this.extractRange(parsed, i, Math.min(parsed.length, i + 256), extracted, exs);
        if (pause.isDue()) await pause.due();
      }
    }
    if (this.resolver && this.cfg.resolve.mode !== "off" && exs.length > 0) {
      // Bounded by the resolver timeout and by the lookup deadline (`--wait` waits the timeout).
      const deadline = opts.wait ? this.cfg.resolve.timeout_ms : Math.min(this.cfg.resolve.timeout_ms, opts.deadlineMs ?? this.cfg.lookup.deadline_ms);
      await addResolvedAnswers(parsed, extracted, this.resolver, this.cfg.resolve.mode, deadline);
    }
    if (pause !== undefined) await pause.due();
    const ips = publicIps(exs);
    let results: ReadonlyMap<string, IpResult> = NO_RESULTS;
    let failed = false;
    if (ips.length > 0) {
      try {
        const lookupOpts: { deadlineMs?: number; wait?: boolean } = {};
        if (opts.deadlineMs !== undefined) lookupOpts.deadlineMs = opts.deadlineMs;
        if (opts.wait) lookupOpts.wait = true;
        results = await this.geo.lookup(ips, lookupOpts);
      } catch (e) {
        failed = true;
        this.logger?.error({ err: e }, "lookup failed; records returned unenriched");
      }
    }
    if (pause !== undefined) await pause.due();
    const fr: FormatRun = Object.assign({ parsed, extracted, results, failed }, run);
    if (pause === undefined) this.formatRange(fr, 0, parsed.length);
    else {
      for (let i = 0; i < parsed.length; i += 256) {
        this.formatRange(fr, i, Math.min(parsed.length, i + 256));
        if (pause.isDue()) await pause.due();
      }
    }
    return ips;
  }

  /** Extracts the answers of `parsed[from, to)`. */
  private extractRange(parsed: readonly ParsedItem[], from: number, to: number, extracted: Array<Extracted | undefined>, exs: Extracted[]): void {
    for (let i = from; i < to; i++) {
      const p = parsed[i] as ParsedItem;
      if (p.kind === "record") {
        const ex = extract(p.rec);
        extracted[i] = ex;
        exs.push(ex);
      }
    }
  }

  /** Formats `run.parsed[from, to)` into `run.items`, counting results. */
  private formatRange(run: FormatRun, from: number, to: number): void {
    const { parsed, extracted, format, out, results, failed, counts, items, packed } = run;
    for (let i = from; i < to; i++) {
      const p = parsed[i] as ParsedItem;
      if (p.kind === "unparsed") {
        counts.unparsed++;
        items.push(p);
        continue;
      }
      if (p.kind === "passthrough") {
        counts.skipped++;
        this.pushPassthrough(items, format, p.value, p.reason, p.text);
        continue;
      }
      const ex = extracted[i] as Extracted;
      try {
        // Computed once here and handed to the formatter, which would otherwise compute it again.
        const st = recordStatus(ex, results, failed, p.rec.kind);
        const rec = p.rec;
        const pol = this.policy?.match(rec, ex.answers, results);
        if (packed !== undefined && format === "ecs" && rec.whole === true) {
          const from = packed.off;
          const count = formatEcsPacked(packed, rec, ex, results, out, failed, st, pol);
          if (count !== undefined) {
            items.push({ kind: "msgpack", count, from, to: packed.off });
            counts[st.status]++;
            continue;
          }
        }
        const fast = format !== "ecs" || rec.text === undefined ? undefined : formatEcsText(rec, ex, results, out, failed, rec.text, st, pol);
        if (fast !== undefined) {
          // The first piece is a prefix of the source text, so (ASCII) its bytes start where the text's do.
          items.push(rec.src !== undefined ? { kind: "jsontext", parts: fast, headSrc: rec.src, headAt: rec.at ?? 0 } : { kind: "jsontext", parts: fast });
        }
        else this.pushRecord(items, format, out, rec, ex, results, failed, st, pol);
        counts[st.status]++;
      } catch (e) {
        // A formatter bug must not lose the record: it goes out as it came in.
        counts.error++;
        this.logger?.error({ err: e, kind: p.rec.kind }, "format failed; record passed through");
        items.push(p.rec.text === undefined ? { kind: "json", value: p.rec.record } : { kind: "jsontext", parts: [p.rec.text] });
      }
    }
  }

  /** Decodes a body, enriches it and encodes the answer in the same framing. */
  async enrichBody(
    body: Uint8Array,
    meta: { contentType?: string; contentEncoding?: string; maxDecodedBytes?: number },
    opts: EnrichOptions = {},
  ): Promise<EnrichOutput & { body: Buffer }> {
    const decoded = decode(body, meta);
    const res = await this.enrichDecoded(decoded, opts);
    return Object.assign(res, { body: encodeItems(res.framing, res.items) });
  }

  private pushPassthrough(items: Array<OutputItem | PackedAdded>, format: OutputFormat, value: unknown, reason: "not_object" | "unparsed", text: string | undefined): void {
    if (format === "quicksight") {
      items.push({ kind: "json", value: passthroughQuicksight(value, reason, text) });
      return;
    }
    const v = passthroughEcs(value, reason);
    if (text === undefined || (isPlain(v) && !atRisk(text))) items.push({ kind: "json", value: v });
    // Not an object: it goes out as it came. An object: its own text with `dnsgeo` spliced in.
    else if (!isPlain(value) || !isPlain(v)) items.push({ kind: "jsontext", parts: [text] });
    else items.push({ kind: "jsontext", parts: [losslessText(text, value, v)] });
  }

  private pushRecord(
    items: Array<OutputItem | PackedAdded>,
    format: OutputFormat,
    out: Config["output"],
    rec: ParsedRecord,
    ex: Extracted,
    results: ReadonlyMap<string, IpResult>,
    failed: boolean,
    st: StatusResult,
    pol: RecordPolicy | undefined,
  ): void {
    if (format === "quicksight") {
      for (const row of formatQuicksight(rec, ex, results, out, failed, st, pol)) items.push({ kind: "json", value: row });
    } else {
      const v = formatEcs(rec, ex, results, out, failed, st, pol);
      // Nothing in the record's text that serializing again would respell: the object path.
      items.push(rec.text === undefined || !atRisk(rec.text) ? { kind: "json", value: v } : { kind: "jsontext", parts: [losslessText(rec.text, rec.record, v)] });
    }
  }
}

/** `out` (derived from `orig` by formatEcs) as JSON text built on `orig`'s own `text`. */
function losslessText(text: string, orig: Record<string, unknown>, out: Record<string, unknown>): string {
  const [start, end] = trimmedSpan(text);
  return mergedText(text, start, end, orig, out);
}
