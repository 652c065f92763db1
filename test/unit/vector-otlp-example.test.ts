/**
 * examples/vector/otlp.yaml: no Vector binary here, so the config is checked for shape
 * against what Vector documents (0.51+) and against dnsgeo's own config: the opentelemetry
 * source listens where dnsgeo's otlp.next_hop points, keeps the OTLP shape, and the
 * chain is acknowledged end to end.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { loadConfig } from "../../src/config.js";
import { nextHopUrl } from "../../src/transport/otlp-forwarder.js";

type Obj = Record<string, unknown>;
const DIR = fileURLToPath(new URL("../../examples/vector/", import.meta.url));
const vector = parseYaml(readFileSync(`${DIR}otlp.yaml`, "utf8")) as Obj;
const dnsgeo = loadConfig({ file: `${DIR}dnsgeo-otlp.yaml` });

const at = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((cur, k) => (cur !== null && typeof cur === "object" ? (cur as Obj)[k] : undefined), o);

describe("examples/vector/otlp.yaml", () => {
  it("has an opentelemetry source at dnsgeo's otlp.next_hop, keeping the OTLP shape", () => {
    const src = at(vector, "sources", "dnsgeo_otlp") as Obj;
    expect(src.type).toBe("opentelemetry");
    expect(src.use_otlp_decoding).toBe(true);
    const hop = new URL(nextHopUrl(dnsgeo.otlp.next_hop ?? ""));
    expect(at(src, "http", "address")).toBe(`${hop.hostname}:${hop.port}`);
    // Vector's opentelemetry source serves OTLP/HTTP logs at the standard path.
    expect(hop.pathname).toBe("/v1/logs");
  });

  it("acknowledges end to end, and every sink reads the source's logs output", () => {
    expect(at(vector, "acknowledgements", "enabled")).toBe(true);
    const sinks = at(vector, "sinks") as Record<string, { inputs: string[] }>;
    expect(Object.keys(sinks).length).toBeGreaterThan(0);
    for (const [name, s] of Object.entries(sinks)) expect(s.inputs, name).toEqual(["dnsgeo_otlp.logs"]);
  });
});
