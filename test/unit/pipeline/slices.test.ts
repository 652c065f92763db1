import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { loadConfig } from "../../../src/config.js";
import { decode, encodeItems, encodeItemsSliced, splitBody, splitBodySliced } from "../../../src/pipeline/framing.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import type { Pause } from "../../../src/pipeline/slices.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";

/** A pause that is always due: every slice boundary yields, the most the sliced paths can be cut. */
function everyBoundary(): Pause & { yields: number } {
  const p = {
    yields: 0,
    isDue: () => true,
    due: async () => {
      p.yields++;
      await new Promise<void>((r) => setImmediate(r));
    },
  };
  return p;
}

const record = fc.record({
  query_name: fc.string(),
  answers: fc.array(fc.record({ Rdata: fc.constantFrom("8.8.8.8", "1.1.1.1", "10.0.0.1", "2606:4700:4700::1111", "x"), Type: fc.constant("A") }), { maxLength: 3 }),
  note: fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.integer()),
});

/** NDJSON-ish bodies: records, junk lines, blank lines, CRLF, a BOM, RS separators. */
const body = fc
  .tuple(
    fc.boolean(),
    fc.array(fc.oneof({ weight: 5, arbitrary: record.map((r) => JSON.stringify(r)) }, fc.constantFrom("", " ", "not json", "[1,2]", "7", "\u001e{\"a\":1}", "{\"dnsgeo\":{\"status\":\"enriched\"}}"), fc.string({ unit: "grapheme" })), { maxLength: 600 }),
    fc.constantFrom("\n", "\r\n"),
  )
  .map(([bom, lines, eol]) => Buffer.from((bom ? "\ufeff" : "") + lines.join(eol) + eol, "utf8"));

describe("sliced decode, enrichment and encoding", () => {
  it("splitBodySliced gives what splitBody gives, for any body and content type", async () => {
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom(undefined, "application/x-ndjson", "application/json"), async (raw, ct) => {
        const p = everyBoundary();
        const sliced = await splitBodySliced(raw, ct, p);
        const whole = splitBody(raw, ct);
        expect(sliced.framing).toBe(whole.framing);
        // `src`/`at` may point into different texts; what each item means must be the same.
        expect(sliced.items.map(({ kind, ...x }) => [kind, "value" in x ? x.value : undefined, "raw" in x ? x.raw : undefined, "text" in x ? x.text : undefined])).toEqual(
          whole.items.map(({ kind, ...x }) => [kind, "value" in x ? x.value : undefined, "raw" in x ? x.raw : undefined, "text" in x ? x.text : undefined]),
        );
      }),
      { numRuns: 150 },
    );
  });

  it("a pretty-printed document and a JSON array are still read whole", async () => {
    for (const text of ['{\n  "a": 1\n}\n', '[{"a":1},\n{"b":2}]', '{"a":1}\n']) {
      const raw = Buffer.from(text);
      expect(await splitBodySliced(raw, "application/json", everyBoundary())).toEqual(splitBody(raw, "application/json"));
    }
  });

  it("enrichment and encoding in slices give the same bytes as in one run, for ECS and QuickSight", async () => {
    const config = loadConfig({ env: {} });
    const enricher = new Enricher({ geo: new FixtureGeoService(), config });
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom("ecs" as const, "quicksight" as const), async (raw, format) => {
        const whole = await enricher.enrichDecoded(decode(raw, { contentType: "application/x-ndjson" }), { format });
        const p = everyBoundary();
        const sliced = await enricher.enrichDecoded(await splitBodySliced(raw, "application/x-ndjson", p), { format, pause: p });
        expect(sliced.counts).toEqual(whole.counts);
        const a = encodeItems(whole.framing, whole.items);
        const b = await encodeItemsSliced(sliced.framing, sliced.items, p);
        expect(b.equals(a)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it("a batch of several parts (20 000 records, junk and repeated IPs among them) gives the same bytes, counts and IPs looked up as in one run", async () => {
    const config = loadConfig({ env: {} });
    const enricher = new Enricher({ geo: new FixtureGeoService(), config });
    const ips = ["8.8.8.8", "1.1.1.1", "10.0.0.1", "2606:4700:4700::1111", "9.9.9.9"];
    const lines = Array.from({ length: 20_000 }, (_, i) =>
      i % 997 === 0 ? "not json" : JSON.stringify({ query_name: `h${i}.`, answers: [{ Rdata: ips[i % ips.length], Type: "A" }, { Rdata: ips[(i * 7) % ips.length], Type: "A" }] }),
    );
    const raw = Buffer.from(lines.join("\n") + "\n");
    for (const format of ["ecs", "quicksight"] as const) {
      const whole = await enricher.enrichDecoded(decode(raw, { contentType: "application/x-ndjson" }), { format });
      const p = everyBoundary();
      const parts = await enricher.enrichDecoded(await splitBodySliced(raw, "application/x-ndjson", p), { format, pause: p });
      expect(parts.counts).toEqual(whole.counts);
      expect(parts.lookedUp).toBe(whole.lookedUp);
      expect((await encodeItemsSliced(parts.framing, parts.items, p)).equals(encodeItems(whole.framing, whole.items))).toBe(true);
    }
  });

  it("a large batch yields many times", async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ query_name: `h${i}.`, answers: [{ Rdata: "8.8.8.8" }] }));
    const raw = Buffer.from(lines.join("\n") + "\n");
    const config = loadConfig({ env: {} });
    const enricher = new Enricher({ geo: new FixtureGeoService(), config });
    const p = everyBoundary();
    const d = await splitBodySliced(raw, "application/x-ndjson", p);
    const afterSplit = p.yields;
    const out = await enricher.enrichDecoded(d, { pause: p });
    const afterEnrich = p.yields;
    await encodeItemsSliced(out.framing, out.items, p);
    // 256 lines per slice, and the same per slice in each loop of enrichment and encoding.
    expect(afterSplit).toBeGreaterThanOrEqual(19);
    expect(afterEnrich - afterSplit).toBeGreaterThanOrEqual(38);
    expect(p.yields - afterEnrich).toBeGreaterThanOrEqual(38);
  });
});
