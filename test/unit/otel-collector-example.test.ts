/**
 * examples/otel-collector/: no Collector binary here, so the config is checked for shape
 * against what the Collector documents and against dnsgeo's own config: the otlphttp
 * exporter sends protobuf to dnsgeo's HTTP port, retries without a time limit from a
 * queue, the otlp receiver listens where dnsgeo's otlp.next_hop points, and the enriched
 * logs cannot loop back into dnsgeo.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { loadConfig } from "../../src/config.js";
import { nextHopUrl } from "../../src/transport/otlp-forwarder.js";

type Obj = Record<string, unknown>;
const DIR = fileURLToPath(new URL("../../examples/otel-collector/", import.meta.url));
const collector = parseYaml(readFileSync(`${DIR}collector.yaml`, "utf8")) as Obj;
const dnsgeo = loadConfig({ file: `${DIR}dnsgeo.yaml` });

const at = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((cur, k) => (cur !== null && typeof cur === "object" ? (cur as Obj)[k] : undefined), o);

describe("examples/otel-collector", () => {
  it("has the Collector's top-level sections only, and every pipeline names components that are defined", () => {
    expect(Object.keys(collector).sort()).toEqual(["exporters", "receivers", "service"]);
    const pipelines = at(collector, "service", "pipelines") as Record<string, { receivers: string[]; exporters: string[]; processors?: string[] }>;
    expect(Object.keys(pipelines).length).toBeGreaterThanOrEqual(2);
    for (const [name, p] of Object.entries(pipelines)) {
      expect(name.split("/")[0], name).toBe("logs");
      for (const r of p.receivers) expect(at(collector, "receivers", r), `${name}: receiver ${r}`).toBeDefined();
      for (const e of p.exporters) expect(at(collector, "exporters", e), `${name}: exporter ${e}`).toBeDefined();
    }
  });

  it("the otlphttp exporter sends protobuf to dnsgeo's /v1/logs and retries for as long as dnsgeo answers 503", () => {
    const exp = at(collector, "exporters", "otlphttp/dnsgeo") as Obj;
    const url = new URL(exp.endpoint as string);
    // otlphttp adds /v1/logs to `endpoint` for logs.
    expect(url.pathname === "/" || url.pathname === "").toBe(true);
    expect(url.hostname).toBe(dnsgeo.http.host);
    expect(Number(url.port)).toBe(dnsgeo.http.port);
    expect(exp.encoding).toBe("proto");
    expect(["gzip", "none", undefined]).toContain(exp.compression);
    expect(at(exp, "retry_on_failure", "enabled")).toBe(true);
    expect(at(exp, "retry_on_failure", "max_elapsed_time")).toBe(0);
    expect(at(exp, "sending_queue", "enabled")).toBe(true);
  });

  it("dnsgeo's otlp.next_hop is the otlp receiver's HTTP endpoint, and the enriched logs never go back to dnsgeo", () => {
    const endpoint = at(collector, "receivers", "otlp", "protocols", "http", "endpoint") as string;
    const hop = new URL(nextHopUrl(dnsgeo.otlp.next_hop ?? ""));
    expect(`${hop.hostname}:${hop.port}`).toBe(endpoint);
    expect(hop.pathname).toBe("/v1/logs");
    const pipelines = at(collector, "service", "pipelines") as Record<string, { receivers: string[]; exporters: string[] }>;
    for (const [name, p] of Object.entries(pipelines)) {
      if (p.receivers.includes("otlp")) expect(p.exporters, name).not.toContain("otlphttp/dnsgeo");
    }
    expect(Object.values(pipelines).some((p) => p.exporters.includes("otlphttp/dnsgeo"))).toBe(true);
  });
});
