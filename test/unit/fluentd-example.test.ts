/**
 * examples/fluentd/: no Fluentd binary here, so fluentd.conf is read for its shape and
 * checked against dnsgeo's config: out_forward sends to fluent.listen and waits for acks
 * with a buffer that never gives up, fluent.next_hop is an in_forward of the same
 * Fluentd, and the enriched records it receives cannot match the rule that sends to dnsgeo.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config.js";

interface Directive {
  name: string;
  arg: string;
  params: Record<string, string>;
  children: Directive[];
}

/** Fluentd's config syntax, as far as this file uses it: `<name arg>` … `</name>` blocks of `key value` lines. */
function parseFluentdConf(text: string): Directive {
  const root: Directive = { name: "root", arg: "", params: {}, children: [] };
  const stack = [root];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const top = stack[stack.length - 1] as Directive;
    const close = /^<\/(\S+)>$/.exec(line);
    if (close) {
      expect(top.name, `closing ${close[1]}`).toBe(close[1]);
      stack.pop();
      continue;
    }
    const open = /^<(\S+?)(?:\s+(.*))?>$/.exec(line);
    if (open) {
      const d: Directive = { name: open[1] as string, arg: open[2] ?? "", params: {}, children: [] };
      top.children.push(d);
      stack.push(d);
      continue;
    }
    const kv = /^(\S+)\s+(.*)$/.exec(line);
    expect(kv, line).not.toBeNull();
    top.params[(kv as RegExpExecArray)[1] as string] = (kv as RegExpExecArray)[2] as string;
  }
  expect(stack).toHaveLength(1);
  return root;
}

const DIR = fileURLToPath(new URL("../../examples/fluentd/", import.meta.url));
const conf = parseFluentdConf(readFileSync(`${DIR}fluentd.conf`, "utf8"));
const dnsgeo = loadConfig({ file: `${DIR}dnsgeo-fluentd.yaml` });
const [listenHost, listenPort] = (dnsgeo.fluent.listen ?? "").split(":");
const [hopHost, hopPort] = (dnsgeo.fluent.next_hop ?? "").split(":");

/** Whether a Fluentd match pattern (`dns.**`, `a.*`, `**`) matches `tag`. */
function matches(pattern: string, tag: string): boolean {
  const re = pattern
    .split(/\s+/)
    .map((p) => `^${p.replace(/\./g, "\\.").replace(/\\\.\*\*/g, "(\\..*)?").replace(/\*\*/g, ".*").replace(/(?<!\.)\*/g, "[^.]+")}$`);
  return re.some((r) => new RegExp(r).test(tag));
}

describe("examples/fluentd", () => {
  const matchToDnsgeo = conf.children.find((d) => d.name === "match" && d.params["@type"] === "forward");
  const enrichedIn = conf.children.find((d) => d.name === "source" && d.params["@type"] === "forward");

  it("out_forward sends to dnsgeo's fluent.listen, waits for acks, and keeps chunks until they are acked", () => {
    expect(matchToDnsgeo).toBeDefined();
    const server = matchToDnsgeo?.children.find((d) => d.name === "server");
    expect(server?.params.host).toBe(listenHost);
    expect(server?.params.port).toBe(listenPort);
    expect(matchToDnsgeo?.params.require_ack_response).toBe("true");
    const buffer = matchToDnsgeo?.children.find((d) => d.name === "buffer");
    expect(buffer?.params.retry_forever).toBe("true");
  });

  it("dnsgeo's fluent.next_hop is an in_forward of the same Fluentd, whose records go to a label that never sends to dnsgeo", () => {
    expect(enrichedIn?.params.port).toBe(hopPort);
    expect(enrichedIn?.params.bind).toBe(hopHost);
    const label = enrichedIn?.params["@label"] ?? "";
    expect(label).not.toBe("");
    const labelBlock = conf.children.find((d) => d.name === "label" && d.arg === label);
    expect(labelBlock).toBeDefined();
    // The tag the tail source gives; the enriched records come back under it.
    const tag = conf.children.find((d) => d.name === "source" && d.params["@type"] === "tail")?.params.tag ?? "";
    expect(matches(matchToDnsgeo?.arg ?? "", tag)).toBe(true);
    for (const m of labelBlock?.children ?? []) expect(m.params["@type"], `label ${label}: ${m.arg}`).not.toBe("forward");
    expect(labelBlock?.children.some((m) => m.name === "match" && matches(m.arg, tag))).toBe(true);
  });
});
