/**
 * fast-check arbitraries for the lossless property tests: JSON records as *text*, with
 * the spellings JSON.parse + JSON.stringify would change (integers beyond 2^53, `1.0`,
 * `1E5`, `-0`, `1e400`, escapes, lone surrogates), deep objects and unicode, wrapped in
 * the shape of every input kind dnsgeo reads.
 */
import fc from "fast-check";

const numberText = fc.oneof(
  fc.constantFrom("9223372036854775808", "-9223372036854775809", "119.0", "1E5", "7.6967E7", "-0", "1e400", "-1e-400", "0.10", "1.50e+3", "12345678901234567890.123456789", "0", "42"),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
  fc.tuple(fc.integer({ min: -9999, max: 9999 }), fc.nat({ max: 9999 }), fc.integer({ min: -30, max: 30 })).map(([a, b, e]) => `${a}.${String(b).padStart(4, "0")}e${e}`),
);

const stringText = fc.oneof(
  fc.string({ maxLength: 12, unit: "grapheme" }).map((s) => JSON.stringify(s)),
  fc.constantFrom('"\\ud800"', '"a\\udc00b"', '"\\u00e9t\\u00E9"', '"\\/path\\/x"', '"caf\u00e9 \ud83d\ude00"', '"tab\\tnl\\n"', '""', '"\\"q\\""'),
);

const keyText = fc.oneof(
  fc.constantFrom("a", "b", "n", "dns", "destination", "dnsgeo", "dnsgeo_original", "aws", "enrichments", "geo", "ip", "x.y", "__proto__", "k\\u0041"),
  fc.string({ maxLength: 6 }).map((s) => JSON.stringify(s).slice(1, -1)),
);

/** A JSON value as text. */
export const valueText: fc.Arbitrary<string> = fc.letrec<{ v: string }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    numberText,
    stringText,
    fc.constantFrom("true", "false", "null"),
    fc.array(tie("v"), { maxLength: 4 }).map((xs) => `[${xs.join(",")}]`),
    fc.uniqueArray(fc.tuple(keyText, tie("v")), { maxLength: 4, selector: ([k]) => JSON.parse(`"${k}"`) as string }).map((ms) => `{${ms.map(([k, v]) => `"${k}":${v}`).join(",")}}`),
  ),
})).v;

/** Extra members (`"k":v` texts) with distinct keys, none named like `reserved`. */
export function membersText(reserved: readonly string[]): fc.Arbitrary<string[]> {
  return fc
    .uniqueArray(fc.tuple(keyText, valueText), { maxLength: 6, selector: ([k]) => JSON.parse(`"${k}"`) as string })
    .map((ms) => ms.filter(([k]) => !reserved.includes(JSON.parse(`"${k}"`) as string)).map(([k, v]) => `"${k}":${v}`));
}

const join = (...parts: Array<string | string[]>): string => parts.flat().filter((p) => p !== "").join(",");

/** One record of each input kind as text, with arbitrary members at the top and nested. */
export const recordText: fc.Arbitrary<{ kind: string; text: string }> = fc
  .tuple(
    fc.constantFrom("route53", "dns_firewall", "ecs", "zeek", "sysmon", "sysmon_event", "ocsf", "unknown"),
    membersText(["query_name", "answers", "dns", "query", "id.orig_h", "QueryName", "QueryResults", "Event", "class_uid", "firewall_rule_action", "query_type"]),
    membersText(["answers", "question", "resolved_ip", "hostname", "QueryName", "QueryResults", "EventData", "System"]),
    fc.constantFrom('"8.8.8.8"', '"1.1.1.1"', '"10.0.0.1"', '"2606:4700:4700::1111"'),
  )
  .map(([kind, top, nested, ip]) => {
    switch (kind) {
      case "route53":
        return { kind, text: `{${join(top, `"query_name":"a.example."`, `"answers":[{"Rdata":${ip},"Type":"A","Class":"IN"}]`)}}` };
      case "dns_firewall":
        return { kind, text: `{${join(`"query_name":"a.example."`, `"firewall_rule_action":"BLOCK"`, `"answers":[]`, top)}}` };
      case "ecs":
        return { kind, text: `{${join(top, `"dns":{${join(nested, `"question":{"name":"a.example."}`, `"answers":[{"data":${ip}}]`)}}`)}}` };
      case "zeek":
        return { kind, text: `{${join(`"query":"a.example."`, `"id.orig_h":"10.1.1.1"`, top, `"answers":[${ip}]`)}}` };
      case "sysmon":
        return { kind, text: `{${join(top, `"EventID":22`, `"QueryName":"a.example."`, `"QueryResults":${ip}`)}}` };
      case "sysmon_event":
        return { kind, text: `{"Event":{${join(`"System":{"EventID":22}`, `"EventData":{${join(nested, `"QueryName":"a.example."`, `"QueryResults":${ip}`)}}`)}}${top.length > 0 ? "," : ""}${top.join(",")}}` };
      case "ocsf":
        return { kind, text: `{${join(`"class_uid":4003`, `"query":{${join(nested, `"hostname":"a.example."`)}}`, `"answers":[{"rdata":${ip},"type":"A"}]`, top)}}` };
      default:
        return { kind, text: `{${top.join(",")}}` };
    }
  });
