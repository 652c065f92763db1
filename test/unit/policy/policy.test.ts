/**
 * Policy rules: the compiled matcher (each criterion, AND across criteria, OR within
 * one, patterns, CIDRs v4/v6), refusals of bad rules, and the ECS output: the text fast
 * path gives what the object path gives, tags included, and stays valid JSON.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig, type PolicyRule } from "../../../src/config.js";
import type { Entry, GeoInfo, IpResult } from "../../../src/lookup/lookup.js";
import { CompiledPolicy, PolicyRuleError, ipv4Number, ipv6Number } from "../../../src/policy/compile.js";
import { readRulesFile, sourceAddress } from "../../../src/policy/engine.js";
import { formatEcs, formatEcsText } from "../../../src/pipeline/format-ecs.js";
import { formatQuicksight } from "../../../src/pipeline/format-quicksight.js";
import { extract } from "../../../src/pipeline/extract.js";
import type { ParsedRecord } from "../../../src/pipeline/types.js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";

function entry(ip: string, g: Partial<GeoInfo>): Entry {
  return { ip, geo: Object.assign({ ip, source: "ip-api", fetchedAt: 1 }, g), src: "ip-api", fetchedAt: 1, expiresAt: 2 };
}

const GEO: Record<string, Partial<GeoInfo>> = {
  "8.8.8.8": { countryCode: "US", regionCode: "VA", regionName: "Virginia", asn: 15169, asOrg: "Google LLC", isp: "Google LLC", org: "Google Public DNS" },
  "1.1.1.1": { countryCode: "AU", regionCode: "QLD", regionName: "Queensland", asn: 13335, asOrg: "Cloudflare, Inc.", isp: "Cloudflare, Inc", org: "APNIC" },
  "2606:4700:4700::1111": { countryCode: "CA", asn: 13335, asOrg: "Cloudflare, Inc." },
  "5.255.255.5": { countryCode: "RU", asn: 13238, asOrg: "YANDEX LLC" },
};

function results(): Map<string, IpResult> {
  const m = new Map<string, IpResult>();
  for (const [ip, g] of Object.entries(GEO)) m.set(ip, { entry: entry(ip, g), final: true });
  return m;
}

function rec(answers: string[], queryName = "www.example.com.", extra: Record<string, unknown> = {}): ParsedRecord {
  return { kind: "route53", record: Object.assign({ query_name: queryName, srcaddr: "10.0.0.5" }, extra), queryName, answers };
}

function tagsOf(p: CompiledPolicy, r: ParsedRecord): readonly string[] {
  return p.match(r, extract(r).answers, results())?.tags ?? [];
}

describe("CompiledPolicy", () => {
  it("matches each criterion on its own", () => {
    // Prepare
    const rules: PolicyRule[] = [
      { name: "c", tag: "country", countries: ["ru", "AU"] },
      { name: "r1", tag: "region-code", regions: ["US-VA"] },
      { name: "r2", tag: "region-name", regions: ["queensland"] },
      { name: "a", tag: "asn", asns: [13335] },
      { name: "o1", tag: "asorg-glob", as_orgs: ["yandex*"] },
      { name: "o2", tag: "isp-regex", isps: ["/^google/i"] },
      { name: "o3", tag: "org-exact", orgs: ["apnic"] },
      { name: "n4", tag: "cidr4", cidrs: ["8.8.0.0/16"] },
      { name: "n6", tag: "cidr6", cidrs: ["2606:4700::/32"] },
      { name: "q", tag: "suffix", query_suffixes: ["Example.COM."] },
    ];
    const p = new CompiledPolicy(rules);
    // Act + Assess
    expect(tagsOf(p, rec(["8.8.8.8"], "a.b."))).toEqual(["region-code", "isp-regex", "cidr4"]);
    expect(tagsOf(p, rec(["1.1.1.1"], "a.b."))).toEqual(["country", "region-name", "asn", "org-exact"]);
    expect(tagsOf(p, rec(["2606:4700:4700::1111"], "a.b."))).toEqual(["asn", "cidr6"]);
    expect(tagsOf(p, rec(["5.255.255.5"], "a.b."))).toEqual(["country", "asorg-glob"]);
    expect(tagsOf(p, rec([], "x.example.com."))).toEqual(["suffix"]);
    expect(tagsOf(p, rec([], "notexample.com."))).toEqual([]);
    expect(p.match(rec(["9.9.9.9"], "a.b."), extract(rec(["9.9.9.9"])).answers, results())).toBeUndefined();
  });

  it("ANDs criteria of one rule; a name-and-answer rule reports the answer IP; per-answer tags", () => {
    // Prepare
    const p = new CompiledPolicy([
      { name: "both", tag: "cf-under-example", asns: [13335], query_suffixes: ["example.com"] },
      { name: "same-tag", tag: "cf-under-example", countries: ["AU"] },
    ]);
    const r = rec(["8.8.8.8", "1.1.1.1"]);
    // Act
    const m = p.match(r, extract(r).answers, results());
    // Assess
    expect(m?.tags).toEqual(["cf-under-example"]);
    expect(m?.hits).toEqual([
      { rule: "both", tag: "cf-under-example", ip: "1.1.1.1" },
      { rule: "same-tag", tag: "cf-under-example", ip: "1.1.1.1" },
    ]);
    expect(m?.answerTags[0]).toBeUndefined();
    expect(m?.answerTags[1]).toEqual(["cf-under-example"]);
    expect(tagsOf(p, rec(["2606:4700:4700::1111"], "other.org."))).toEqual([]);
  });

  it("refuses bad CIDRs, bad regexes and duplicate names; parses IPv6 forms", () => {
    expect(() => new CompiledPolicy([{ name: "x", tag: "t", cidrs: ["10.0.0.0/33"] }])).toThrow(PolicyRuleError);
    expect(() => new CompiledPolicy([{ name: "x", tag: "t", cidrs: ["nonsense"] }])).toThrow(/not a CIDR/);
    expect(() => new CompiledPolicy([{ name: "x", tag: "t", isps: ["/(/"] }])).toThrow(/regular expression/);
    expect(() => new CompiledPolicy([{ name: "x", tag: "t", asns: [1] }, { name: "x", tag: "u", asns: [2] }])).toThrow(/twice/);
    expect(ipv4Number("1.2.3.4")).toBe(0x01020304);
    expect(ipv4Number("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["1.2.3", "1.2.3.4.5", "1.2.3.256", "1..2.3", "1.2.3.4.", "1.2.3.0004", "a.b.c.d", ""]) expect(ipv4Number(bad), bad).toBeUndefined();
    expect(ipv6Number("::ffff:1.2.3.4")).toBe(0xffff01020304n);
    expect(ipv6Number("2001:db8::1")).toBe((0x20010db8n << 96n) | 1n);
    expect(ipv6Number("1:2:3:4:5:6:7:8:9")).toBeUndefined();
  });

  it("reads a rules file as a list or {rules: [...]}, and names the bad key", () => {
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-policy-"));
    const a = join(dir, "a.yaml");
    writeFileSync(a, "- name: x\n  tag: t\n  countries: [RU]\n");
    expect(readRulesFile(a)).toEqual([{ name: "x", tag: "t", countries: ["RU"] }]);
    writeFileSync(a, JSON.stringify({ rules: [{ name: "y", tag: "t", asns: [1] }] }));
    expect(readRulesFile(a)[0]?.name).toBe("y");
    writeFileSync(a, "- name: x\n  tag: t\n  asns: [AS1]\n");
    expect(() => readRulesFile(a)).toThrow(/0\.asns\.0/);
  });

  it("finds the source address of each kind", () => {
    expect(sourceAddress({ srcaddr: "10.0.0.1" })).toBe("10.0.0.1");
    expect(sourceAddress({ source: { ip: "10.0.0.2" } })).toBe("10.0.0.2");
    expect(sourceAddress({ "id.orig_h": "10.0.0.3" })).toBe("10.0.0.3");
    expect(sourceAddress({ src_endpoint: { ip: "10.0.0.4" } })).toBe("10.0.0.4");
    expect(sourceAddress({})).toBe("");
  });
});

describe("policy tags in the output", () => {
  const policy = new CompiledPolicy([
    { name: "au", tag: "country:AU", countries: ["AU"] },
    { name: "cf", tag: "hosting \"cf\"", asns: [13335] },
    { name: "g", tag: "google", cidrs: ["8.8.0.0/16"] },
    { name: "q", tag: "suffix", query_suffixes: ["example.com"] },
  ]);
  const ips = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "5.255.255.5", "10.0.0.1", "9.9.9.9"];

  it("ECS text fast path equals the object path with tags, or declines for records with their own tags", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...ips), { maxLength: 4 }),
        fc.constantFrom("www.example.com.", "a.org."),
        fc.option(fc.constantFrom<unknown>(["x"], ["google", "y"], "str", []), { nil: undefined }),
        fc.boolean(),
        (answers, q, tags, cold) => {
          // Prepare
          const record: Record<string, unknown> = { query_name: q };
          if (tags !== undefined) record.tags = tags;
          const r: ParsedRecord = { kind: "route53", record, queryName: q, answers };
          const ex = extract(r);
          const res = results();
          if (cold) for (const v of res.values()) v.final = false;
          const pol = policy.match(r, ex.answers, res);
          const out = loadConfig().output;
          // Act
          const text = formatEcsText(r, ex, res, out, false, JSON.stringify(record), undefined, pol)?.join("");
          const obj = formatEcs(r, ex, res, out, false, undefined, pol);
          // Assess
          if (pol !== undefined && tags !== undefined) expect(text).toBeUndefined();
          else expect(JSON.stringify(JSON.parse(text as string))).toBe(JSON.stringify(obj));
          if (pol === undefined) {
            expect(obj.tags).toEqual(tags);
            return;
          }
          if (Array.isArray(tags)) expect(obj.tags).toEqual([...(tags as string[]), ...pol.tags.filter((t) => !(tags as string[]).includes(t))]);
          else if (tags === undefined) expect(obj.tags).toEqual(pol.tags);
          else expect(obj.tags).toBe(tags);
          expect((obj.dnsgeo as { policy: unknown }).policy).toEqual(pol.hits);
          const list = (obj.dnsgeo as { answers?: Array<{ ip: string; tags?: string[] }> }).answers ?? [];
          list.forEach((a, i) => expect(a.tags).toEqual(pol.answerTags[i]));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("QuickSight: policy_tags per row (record's tags; an exploded row its answer's and the name rules')", () => {
    const r = rec(["8.8.8.8", "1.1.1.1"]);
    const ex = extract(r);
    const res = results();
    const pol = policy.match(r, ex.answers, res);
    const out = loadConfig().output;
    expect(formatQuicksight(r, ex, res, out, false, undefined, pol)[0]?.policy_tags).toBe("country:AU;hosting \"cf\";google;suffix");
    expect(formatQuicksight(r, ex, res, { ...out, explode: true }, false, undefined, pol).map((x) => x.policy_tags)).toEqual(["google;suffix", "country:AU;hosting \"cf\";suffix"]);
    expect(formatQuicksight(rec(["9.9.9.9"], "a.org."), extract(rec(["9.9.9.9"])), res, out, false)[0]?.policy_tags).toBeNull();
  });
});

describe("examples/policy/rules.yaml", () => {
  it("loads and compiles, and tags what its comments say", () => {
    // Prepare
    const rules = readRulesFile(new URL("../../../examples/policy/rules.yaml", import.meta.url).pathname);
    const p = new CompiledPolicy(rules);
    const res = new Map<string, IpResult>([
      ["175.45.176.1", { entry: entry("175.45.176.1", { countryCode: "KP" }), final: true }],
      ["162.142.125.1", { entry: entry("162.142.125.1", { countryCode: "US", asn: 398324, asOrg: "Censys, Inc." }), final: true }],
    ]);
    // Act
    const r = rec(["175.45.176.1", "162.142.125.1"], "x.pastebin.com.");
    const m = p.match(r, extract(r).answers, res);
    // Assess
    expect(rules.length).toBe(5);
    expect(m?.tags).toEqual(["policy:restricted-country", "policy:scanner-network", "policy:paste-site"]);
  });
});

describe("examples/elastic/index-template.json maps the policy fields", () => {
  it("tags and dnsgeo.answers.tags as keyword, dnsgeo.policy's rule/tag as keyword and ip as ip", () => {
    // Prepare
    const tpl = JSON.parse(readFileSync(new URL("../../../examples/elastic/index-template.json", import.meta.url), "utf8")) as { template: { mappings: { properties: Record<string, unknown> } } };
    const at = (path: string): unknown => path.split(".").reduce<unknown>((o, k) => ((o as { properties?: Record<string, unknown> })?.properties ?? (o as Record<string, unknown>))?.[k], { properties: tpl.template.mappings.properties });
    // Assess
    expect((at("tags") as { type: string }).type).toBe("keyword");
    expect((at("dnsgeo.answers.tags") as { type: string }).type).toBe("keyword");
    expect((at("dnsgeo.policy.rule") as { type: string }).type).toBe("keyword");
    expect((at("dnsgeo.policy.tag") as { type: string }).type).toBe("keyword");
    expect((at("dnsgeo.policy.ip") as { type: string }).type).toBe("ip");
  });
});
