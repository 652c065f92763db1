import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { firehoseRequest, parse } from "../../../src/pipeline/parse.js";
import type { DecodedItem, ParsedItem, ParsedRecord } from "../../../src/pipeline/types.js";

const inputs = new URL("../../fixtures/inputs/", import.meta.url);
const text = (name: string): string => readFileSync(fileURLToPath(new URL(name, inputs)), "utf8");
const lines = (name: string): Record<string, unknown>[] =>
  text(name).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
const json = (name: string): Record<string, unknown> => JSON.parse(text(name)) as Record<string, unknown>;
const b64gzip = (value: unknown): string => zlib.gzipSync(Buffer.from(JSON.stringify(value))).toString("base64");

const opts = { ipFields: [] as readonly string[] };
const item = (value: unknown): DecodedItem => ({ kind: "json", value });

function recordsOf(items: ParsedItem[]): ParsedRecord[] {
  return items.map((p) => {
    if (p.kind !== "record") throw new Error(`expected a record, got ${p.kind}`);
    return p.rec;
  });
}
function one(value: unknown, o = opts): ParsedRecord {
  const out = recordsOf(parse(item(value), o));
  expect(out).toHaveLength(1);
  return out[0] as ParsedRecord;
}

describe("parse Route 53", () => {
  const recs = lines("route53.ndjson");

  it("CNAME chain: every A/AAAA Rdata in order, CNAME entries left out", () => {
    const input = recs[0];
    const rec = one(input);
    expect(rec.kind).toBe("route53");
    expect(rec.queryName).toBe("www.microsoft.com.");
    expect(rec.answers).toEqual(["13.107.21.200", "204.79.197.200"]);
    expect(rec.record).toBe(input);
    expect(rec.envelope).toBeUndefined();
  });

  it("AAAA, NXDOMAIN, PTR, private and ::ffff: answers", () => {
    expect(one(recs[1]).answers).toEqual(["2606:4700:4700::1111"]);
    expect(one(recs[2])).toMatchObject({ kind: "route53", queryName: "does-not-exist.example.", answers: [] });
    expect(one(recs[3]).answers).toEqual([]);
    expect(one(recs[4]).answers).toEqual(["192.168.1.10", "10.0.0.5"]);
    expect(one(recs[5]).answers).toEqual(["::ffff:8.8.8.8", "2a00:1450:4001:82a::200e"]);
  });

  it("answers of other types are not read even when their text looks like an IP; no Type is read", () => {
    const base = { version: "1.100000", query_name: "x.example.", query_type: "TXT" };
    const rec = one({
      ...base,
      answers: [
        { Rdata: "1.2.3.4", Type: "TXT", Class: "IN" },
        { Rdata: "5.6.7.8", Type: "MX", Class: "IN" },
        { Rdata: "9.9.9.9", Type: "A", Class: "IN" },
        { Rdata: "2606:4700::1", Type: "AAAA", Class: "IN" },
        { Rdata: "8.8.4.4" },
      ],
    });
    expect(rec.answers).toEqual(["9.9.9.9", "2606:4700::1", "8.8.4.4"]);
  });

  it("DNS Firewall BLOCK (no answers) and ALERT", () => {
    const [block, alert] = lines("dns-firewall.ndjson");
    expect(one(block)).toMatchObject({ kind: "dns_firewall", queryName: "malware-c2.example.", answers: [] });
    expect(one(alert)).toMatchObject({ kind: "dns_firewall", answers: ["151.101.1.69"] });
  });

  it("does not mutate the input", () => {
    const input = recs[0] as Record<string, unknown>;
    const before = JSON.stringify(input);
    parse(item(input), opts);
    expect(JSON.stringify(input)).toBe(before);
  });
});

describe("parse CloudWatch Logs envelopes", () => {
  const envelope = json("cloudwatch-envelope.json");

  function assessEnvelope(out: ParsedItem[]): void {
    const recs = recordsOf(out);
    expect(recs.map((r) => r.kind)).toEqual(["route53", "route53", "dns_firewall", "unknown"]);
    expect(recs[0]?.answers).toEqual(["13.107.21.200", "204.79.197.200"]);
    expect(recs[0]?.envelope).toEqual({
      logGroup: "/aws/route53resolver/query-logs",
      logStream: "vpc-0a1b2c3d4e5f60718_i-0abc123def4567890",
      owner: "111122223333",
      id: "38252738362525380123456789012345678901234567890123456789",
      timestamp: 1715677923000,
    });
    // A message that is not JSON: the log event itself is the record.
    expect(recs[3]?.record).toMatchObject({ message: "resolver started on eni-0a1b2c3d" });
    expect(recs[3]?.answers).toEqual([]);
  }

  it("decoded object, one item per log event, policyLevel ignored", () => {
    assessEnvelope(parse(item(envelope), opts));
  });

  it("base64 gzip as a JSON string value", () => {
    assessEnvelope(parse(item(b64gzip(envelope)), opts));
  });

  it("base64 gzip as a raw (unparsed) line", () => {
    assessEnvelope(parse({ kind: "unparsed", raw: b64gzip(envelope) }, opts));
  });

  it("Lambda event {awslogs:{data}}", () => {
    assessEnvelope(parse(item({ awslogs: { data: b64gzip(envelope) } }), opts));
  });

  it("CONTROL_MESSAGE yields nothing", () => {
    expect(parse(item(json("cloudwatch-control.json")), opts)).toEqual([]);
    expect(parse(item(b64gzip(json("cloudwatch-control.json"))), opts)).toEqual([]);
  });
});

describe("parse Firehose requests", () => {
  it("records holding NDJSON expand to their lines", () => {
    const req = json("firehose-ndjson.json");
    const recs = recordsOf(parse(item(req), opts));
    expect(recs.map((r) => r.kind)).toEqual(["route53", "route53", "dns_firewall"]);
    expect(recs.map((r) => r.queryName)).toEqual(["www.microsoft.com.", "one.one.one.one.", "github.global.ssl.fastly.net."]);
  });

  it("a record holding a gzip CloudWatch envelope (the CloudWatch → Firehose path)", () => {
    const envelope = json("cloudwatch-envelope.json");
    const control = json("cloudwatch-control.json");
    const req = {
      requestId: "5d3e1f7a-0000-4000-8000-000000000001",
      timestamp: 1715677931000,
      records: [{ data: b64gzip(control) }, { data: b64gzip(envelope) }],
    };
    const recs = recordsOf(parse(item(req), opts));
    expect(recs).toHaveLength(4);
    expect(recs[2]).toMatchObject({ kind: "dns_firewall", envelope: { logGroup: "/aws/route53resolver/query-logs" } });
  });

  it("undecodable and non-JSON records pass through without failing the others", () => {
    const req = {
      requestId: "r",
      timestamp: 1,
      records: [{ data: Buffer.from([0x1f, 0x8b, 0x08, 0x00]).toString("base64") }, { nodata: true }, { data: Buffer.from("plain text\n").toString("base64") }],
    };
    const out = parse(item(req), opts);
    expect(out).toEqual([
      { kind: "passthrough", value: req.records[0], reason: "unparsed" },
      { kind: "passthrough", value: req.records[1], reason: "unparsed" },
      { kind: "unparsed", raw: "plain text" },
    ]);
  });

  it("concatenated JSON objects in one record are split", () => {
    const data = Buffer.from('{"query_name":"a.","answers":[]}{"query_name":"b.","answers":[]}').toString("base64");
    const recs = recordsOf(parse(item({ requestId: "r", timestamp: 1, records: [{ data }] }), opts));
    expect(recs.map((r) => r.queryName)).toEqual(["a.", "b."]);
  });

  it("firehoseRequest gives the ids to echo", () => {
    expect(firehoseRequest(json("firehose-ndjson.json"))).toEqual({ requestId: "ed4acda5-034f-9f42-bba1-f29aea6d7d8f", timestamp: 1715677930000 });
    expect(firehoseRequest({ requestId: "x", records: [] })).toEqual({ requestId: "x", timestamp: 0 });
    expect(firehoseRequest({ query_name: "a" })).toBeUndefined();
    expect(firehoseRequest("x")).toBeUndefined();
  });
});

describe("parse envelopes that carry nothing usable", () => {
  const r53 = { version: "1.100000", query_name: "example.com.", query_type: "A", answers: [{ Rdata: "93.184.216.34", Type: "A", Class: "IN" }] };
  const b64 = (s: string): string => Buffer.from(s).toString("base64");

  it("awslogs data that is empty, not base64 or not gzip: the event passes through", () => {
    for (const data of ["", "hello", b64(JSON.stringify(r53)), zlib.gzipSync("\n").toString("base64")]) {
      const input = { awslogs: { data }, keep: 1 };
      expect(parse(item(input), opts)).toEqual([{ kind: "passthrough", value: input, reason: "unparsed" }]);
    }
  });

  it("Firehose: one output per record with empty, whitespace-only or non-base64 data", () => {
    const req = { requestId: "r", timestamp: 1, records: [{ data: "" }, { data: b64(JSON.stringify(r53)) }, { data: b64("\n") }, { data: "not base64!!" }, { data: b64("[]") }] };
    const out = parse(item(req), opts);
    expect(out.map((p) => p.kind)).toEqual(["passthrough", "record", "passthrough", "passthrough", "passthrough"]);
    expect(out[0]).toEqual({ kind: "passthrough", value: req.records[0], reason: "unparsed" });
    expect(out[2]).toEqual({ kind: "passthrough", value: req.records[2], reason: "unparsed" });
    expect(out[3]).toEqual({ kind: "passthrough", value: req.records[3], reason: "unparsed" });
  });

  it("a CONTROL_MESSAGE inside awslogs or Firehose still gives nothing", () => {
    const control = json("cloudwatch-control.json");
    expect(parse(item({ awslogs: { data: b64gzip(control) } }), opts)).toEqual([]);
    expect(parse(item({ requestId: "r", timestamp: 1, records: [{ data: b64gzip(control) }] }), opts)).toEqual([]);
  });

  it("a non-JSON line starting with H4sI that is not gzip of records stays as it was", () => {
    const gzText = zlib.gzipSync("hello world").toString("base64");
    expect(gzText.startsWith("H4sI")).toBe(true);
    expect(parse({ kind: "unparsed", raw: gzText }, opts)).toEqual([{ kind: "unparsed", raw: gzText }]);
    expect(parse(item(gzText), opts)).toEqual([{ kind: "passthrough", value: gzText, reason: "not_object" }]);
    const junk = "H4sIAAAAAAAA not base64 at all";
    expect(parse({ kind: "unparsed", raw: junk }, opts)).toEqual([{ kind: "unparsed", raw: junk }]);
  });
});

describe("parse ECS, Zeek, Sysmon", () => {
  it("ECS: answers data then resolved_ip, question name", () => {
    const [a, cname, nx] = lines("ecs.ndjson");
    expect(one(a)).toMatchObject({ kind: "ecs", queryName: "www.google.com", answers: ["142.250.74.46", "142.250.74.46"] });
    expect(one(cname).answers).toEqual(["prod.www-fastly-com.map.fastly.net", "151.101.1.69", "151.101.1.69"]);
    expect(one(nx)).toMatchObject({ kind: "ecs", queryName: "nope.invalid", answers: [] });
  });

  it("Zeek: dotted id.orig_h key, answers in order, missing answers", () => {
    const [a, aaaa, nx] = lines("zeek.ndjson");
    expect(one(a)).toMatchObject({ kind: "zeek", queryName: "www.cloudflare.com", answers: ["www.cloudflare.com.cdn.cloudflare.net", "1.1.1.1", "8.8.8.8"] });
    expect(one(aaaa).answers).toEqual(["ipv6.l.google.com", "2a00:1450:4001:82a::200e", "fe80::1"]);
    expect(one(nx)).toMatchObject({ kind: "zeek", queryName: "missing.example", answers: [] });
    expect(one({ query: "x.example", id: { orig_h: "192.168.1.10" }, answers: ["8.8.8.8"] }).kind).toBe("zeek");
  });

  it("Sysmon 22: direct, winlog-nested and EventData; type: entries are not answers", () => {
    const [direct, winlog, eventData] = lines("sysmon.ndjson");
    expect(one(direct)).toMatchObject({ kind: "sysmon", queryName: "edge.microsoft.com", answers: ["::ffff:13.107.21.200", "::ffff:204.79.197.200"] });
    const w = one(winlog);
    expect(w).toMatchObject({ kind: "sysmon", queryName: "dns.google", answers: ["::ffff:8.8.8.8", "2001:db8::1"] });
    expect(w.record).toBe(winlog);
    expect(one(eventData)).toMatchObject({ kind: "sysmon", queryName: "printer.corp.local", answers: [] });
  });
});

describe("parse Sysmon 22 without QueryResults", () => {
  it("QueryName alone is read when the event id says 22", () => {
    const winlogbeat = { event: { code: "22" }, winlog: { event_id: "22", event_data: { QueryName: "x.example", QueryStatus: "9003" } } };
    expect(one(winlogbeat)).toMatchObject({ kind: "sysmon", queryName: "x.example", answers: [] });
    expect(one({ winlog: { event_id: 22, event_data: { QueryName: "a.example" } } }).kind).toBe("sysmon");
    expect(one({ event: { code: 22 }, winlog: { event_data: { QueryName: "b.example" } } }).kind).toBe("sysmon");
    expect(one({ EventID: 22, QueryName: "c.example", QueryStatus: "123" }).kind).toBe("sysmon");
    expect(one({ EventID: "22", EventData: { QueryName: "d.example" } }).kind).toBe("sysmon");
  });

  it("QueryName alone with another event id, or none, is not Sysmon 22", () => {
    expect(one({ EventID: 1, QueryName: "x.example" }).kind).toBe("unknown");
    expect(one({ winlog: { event_id: "3", event_data: { QueryName: "x.example" } } }).kind).toBe("unknown");
    expect(one({ winlog: { event_data: { QueryName: "x.example" } } }).kind).toBe("unknown");
  });
});

describe("parse custom and unknown", () => {
  const [custom, plain] = lines("custom.ndjson");
  const withFields = { ipFields: ["lookup.result.ips", "upstream.addr", "client", "absent.path"] as readonly string[] };

  it("ip_fields: nested paths, literal dotted keys, string arrays", () => {
    const rec = one(custom, withFields);
    expect(rec.kind).toBe("custom");
    expect(rec.answers).toEqual(["151.101.1.69", "100.64.1.1", "8.8.8.8", "192.168.1.10"]);
  });

  it("no path found → unknown with no answers; no ip_fields → unknown", () => {
    expect(one(plain, withFields)).toMatchObject({ kind: "unknown", answers: [] });
    expect(one(custom)).toMatchObject({ kind: "unknown", answers: [] });
  });
});

describe("parse odd values", () => {
  it("non-objects pass through, unparsed stays unparsed", () => {
    for (const v of [1, "text", null, true, [1, 2], []]) {
      expect(parse(item(v), opts)).toEqual([{ kind: "passthrough", value: v, reason: "not_object" }]);
    }
    expect(parse({ kind: "unparsed", raw: "H4sI but not base64 gzip" }, opts)).toEqual([{ kind: "unparsed", raw: "H4sI but not base64 gzip" }]);
  });

  it("never throws on malformed known shapes", () => {
    const odd: unknown[] = [
      { query_name: 5, answers: "x" },
      { query_name: "a.", answers: [null, 1, { Rdata: 7 }, { Rdata: "1.1.1.1" }] },
      { messageType: "DATA_MESSAGE", logEvents: [null, 3, { message: 5 }, { message: "{bad" }, { message: "[1]" }] },
      { awslogs: { data: "!!!" } },
      { awslogs: "x" },
      { requestId: "x", records: [null, { data: 5 }, { data: "" }] },
      { dns: { answers: [null, { data: 5 }], resolved_ip: [1, "8.8.8.8"], question: "q" } },
      { query: "q", "id.orig_h": "x", answers: "nope" },
      { QueryName: "q", QueryResults: 12 },
      { winlog: { event_data: null } },
      Object.create(null) as object,
    ];
    for (const v of odd) expect(() => parse(item(v), { ipFields: ["a.b", "x"] })).not.toThrow();
    expect(one(odd[1]).answers).toEqual(["1.1.1.1"]);
    expect(parse(item(odd[2]), opts)).toHaveLength(5);
  });

  it("bounds envelope nesting", () => {
    let v: unknown = { query_name: "deep.", answers: [] };
    for (let i = 0; i < 10; i++) v = { awslogs: { data: b64gzip(v) } };
    expect(() => parse(item(v), opts)).not.toThrow();
    const out = parse(item(v), opts);
    expect(out).toHaveLength(1);
    expect(out[0]?.kind).toBe("record");
  });
});
