/**
 * Golden tests: every input fixture through the whole pipeline, compared with
 * its reviewed ECS and QuickSight output in test/fixtures/expected/.
 * Regenerate (then review the diff!) with UPDATE_GOLDEN=1.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { Enricher } from "../../../src/pipeline/enrich.js";
import { FIXTURE_GEO, FixtureGeoService } from "../../helpers/fixture-geo.js";
import type { GeoService, IpResult } from "../../../src/lookup/lookup.js";

const inputs = new URL("../../fixtures/inputs/", import.meta.url);
const expectedDir = new URL("../../fixtures/expected/", import.meta.url);
const update = process.env.UPDATE_GOLDEN === "1";

/** ip_fields used for records of no known kind (the custom fixture). */
const IP_FIELDS = ["lookup.result.ips", "upstream.addr"];

const files = readdirSync(inputs).filter((f) => /\.(json|ndjson)$/.test(f)).sort();

describe("golden outputs", () => {
  it("has a fixture for every input kind", () => {
    const kinds = files.join(" ");
    for (const k of ["route53", "firewall", "cloudwatch", "firehose", "ecs", "zeek", "sysmon", "sysmon-evtx", "ocsf", "custom"]) {
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

/** FixtureGeoService, plus one fixed entry for any other public IP (see test/fixtures/real/SOURCES.md). */
class AnyIpGeo implements GeoService {
  async lookup(ips: readonly string[]): Promise<Map<string, IpResult>> {
    const out = new Map<string, IpResult>();
    for (const ip of ips) {
      const geo = FIXTURE_GEO.get(ip) ?? { ip, countryCode: "ZZ", country: "Fixture", regionCode: "FX", regionName: "Fixture region", city: "Fixture city", lat: 1.5, lon: -2.25, continentCode: "EU", asn: 64496, asOrg: "Fixture AS", source: "ip-api", fetchedAt: 1_790_000_000 };
      out.set(ip, { entry: { ip, geo, src: "ip-api", fetchedAt: 1_790_000_000, expiresAt: 1_791_000_000 }, final: true });
    }
    return out;
  }
  async close(): Promise<void> {}
}

const realDir = new URL("../../fixtures/real/", import.meta.url);
const realExpected = new URL("../../fixtures/real/expected/", import.meta.url);
const realFiles = readdirSync(realDir).filter((f) => f.endsWith(".json")).sort();

describe("golden outputs of real records from public sources", () => {
  it("has a real sample of OCSF DNS Activity and of Sysmon Event.EventData, each detected with its answers", async () => {
    const enricher = new Enricher({ geo: new AnyIpGeo(), config: loadConfig({ env: {} }) });
    const kinds = new Map<string, { kind: string; answers: number }>();
    for (const f of realFiles) {
      const item = { kind: "json" as const, value: JSON.parse(readFileSync(new URL(f, realDir), "utf8")) as unknown };
      const [p] = enricher.parseItems([item]);
      if (p?.kind === "record") kinds.set(f, { kind: p.rec.kind, answers: p.rec.answers.length });
    }
    expect(kinds.get("ocsf-route53-dns-activity.json")).toEqual({ kind: "ocsf", answers: 1 });
    expect(kinds.get("sysmon-22-evtx-anydesk.json")).toEqual({ kind: "sysmon", answers: 10 });
    expect(kinds.get("sysmon-22-evtx-ligolo-failed.json")).toEqual({ kind: "sysmon", answers: 0 });
    expect(kinds.get("route53-dns-firewall-aws-docs.json")).toEqual({ kind: "dns_firewall", answers: 0 });
  });

  for (const file of realFiles) {
    for (const format of ["ecs", "quicksight"] as const) {
      it(`${file} → ${format}`, async () => {
        // Prepare
        const body = readFileSync(new URL(file, realDir));
        const enricher = new Enricher({ geo: new AnyIpGeo(), config: loadConfig({ env: {} }) });
        // Act
        const res = await enricher.enrichBody(body, { contentType: "application/json" }, { format });
        const text = res.body.toString("utf8");
        const actual = JSON.stringify({ framing: res.framing, counts: res.counts, output: JSON.parse(text) as unknown }, null, 2) + "\n";
        // Assess
        const target = new URL(file.replace(/\.json$/, `.${format}.json`), realExpected);
        if (update || !existsSync(target)) {
          mkdirSync(realExpected, { recursive: true });
          writeFileSync(target, actual);
          if (!update) throw new Error(`no golden file yet for ${file} (${format}); wrote one — review it and rerun`);
        }
        expect(actual).toBe(readFileSync(target, "utf8"));
        expect(res.framing).toBe("object");
        // Lossless: the record's own text is the start of the ECS answer, or the QuickSight record column.
        if (format === "quicksight") expect((JSON.parse(text) as { record: string }).record).toBe(body.toString("utf8").trim());
      });
    }
  }
});
