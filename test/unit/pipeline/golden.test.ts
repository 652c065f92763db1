/**
 * Golden tests: every input fixture through the whole pipeline, compared with
 * its reviewed ECS and QuickSight output in test/fixtures/expected/.
 * Regenerate (then review the diff!) with UPDATE_GOLDEN=1.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { FixtureGeoService } from "../../helpers/fixture-geo.js";

const inputs = new URL("../../fixtures/inputs/", import.meta.url);
const expectedDir = new URL("../../fixtures/expected/", import.meta.url);
const update = process.env.UPDATE_GOLDEN === "1";

/** ip_fields used for records of no known kind (the custom fixture). */
const IP_FIELDS = ["lookup.result.ips", "upstream.addr"];

const files = readdirSync(inputs).filter((f) => /\.(json|ndjson)$/.test(f)).sort();

describe("golden outputs", () => {
  it("has a fixture for every input kind", () => {
    const kinds = files.join(" ");
    for (const k of ["route53", "firewall", "cloudwatch", "firehose", "ecs", "zeek", "sysmon", "custom"]) {
      expect(kinds, `no fixture for ${k}`).toContain(k);
    }
  });

  // An ASCII body's lines are copied into the answer as bytes; a body with one non-ASCII
  // character anywhere takes the encode path for every line. Both must give the same bytes.
  for (const file of files.filter((f) => f.endsWith(".ndjson"))) {
    it(`${file}: ECS bytes are the same whether request lines are copied or encoded`, async () => {
      const body = readFileSync(new URL(file, inputs));
      const cfg = loadConfig({ overrides: { input: { ip_fields: IP_FIELDS } } });
      const enricher = new Enricher({ geo: new FixtureGeoService(), config: cfg });
      const text = body.toString("utf8");
      const ascii = Buffer.from(text.endsWith("\n") ? text : text + "\n");
      const wide = Buffer.concat([ascii, Buffer.from('{"note":"café"}\n')]);
      const a = await enricher.enrichBody(ascii, { contentType: "application/x-ndjson" });
      const w = await enricher.enrichBody(wide, { contentType: "application/x-ndjson" });
      // Every fast-path record of an ASCII body took the copy path; none of the wide body did.
      // (The fast path's items are in several pieces; a record merged into its own text is one.)
      const copied = (items: typeof a.items): boolean[] => items.flatMap((i) => (i.kind === "jsontext" && i.parts.length > 1 ? [i.headSrc !== undefined] : []));
      if (/^[\x00-\x7f]*$/.test(text)) expect(copied(a.items).every(Boolean)).toBe(true);
      expect(copied(w.items).some(Boolean)).toBe(false);
      const lines = w.body.toString("utf8").split("\n");
      expect(lines.slice(0, -2).join("\n") + "\n").toBe(a.body.toString("utf8"));
    });
  }

  for (const file of files) {
    for (const format of ["ecs", "quicksight"] as const) {
      it(`${file} → ${format}`, async () => {
        // Prepare
        const body = readFileSync(new URL(file, inputs));
        const geo = new FixtureGeoService();
        const cfg = loadConfig({ overrides: { input: { ip_fields: IP_FIELDS } } });
        const enricher = new Enricher({ geo, config: cfg });
        // Act
        const res = await enricher.enrichBody(body, { contentType: file.endsWith(".ndjson") ? "application/x-ndjson" : "application/json" }, { format });
        const actual = JSON.stringify(
          { framing: res.framing, counts: res.counts, items: res.items.map((i) => (i.kind === "json" ? i.value : i.kind === "jsontext" ? (JSON.parse(i.parts.join("")) as unknown) : { unparsed: i.raw })) },
          null,
          2,
        ) + "\n";
        // Assess
        const target = new URL(`${file.replace(/\.(ndjson|json)$/, "")}.${format}.json`, expectedDir);
        if (update || !existsSync(target)) {
          mkdirSync(expectedDir, { recursive: true });
          writeFileSync(target, actual);
          if (!update) throw new Error(`no golden file yet for ${file} (${format}); wrote one — review it and rerun`);
        }
        expect(actual).toBe(readFileSync(target, "utf8"));
        // The response is framed like the request.
        const re = res.body.toString("utf8");
        if (file.endsWith(".ndjson")) expect(re.endsWith("\n")).toBe(true);
      });
    }
  }
});
