/**
 * Every Fluent Bit config under examples/ runs as written with the real Fluent Bit
 * and a real `dnsgeo serve` configured by the example's own dnsgeo config: only
 * ports and paths are substituted (plain string replacement), and records written
 * to the tailed file must come out of Fluent Bit's stdout output exactly once,
 * enriched. `fluent-bit --dry-run` accepts every config in examples/fluent-bit/ run
 * from the repository root, as its README says.
 */
import { afterEach, describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { FLUENT_BIT_SKIP, ROOT, fluentBitDryRun, type DnsgeoChild, type FluentBit } from "../../helpers/fluent-bit.js";
import { runExample } from "../../helpers/fluent-bit-chain.js";

type Obj = Record<string, unknown>;

const EX = join(ROOT, "examples");
/** Records per example run. */
const N = 2000;

/** The Fluent Bit side and the dnsgeo side of one example, as the files hold them. */
interface Example {
  name: string;
  format: "yaml" | "classic";
  fluentBit: string;
  dnsgeo: string;
  /** Files the config names, copied next to it unchanged. */
  files?: Record<string, string>;
  /** What the example's container environment gives both sides. */
  env?: Record<string, string>;
}

function k8sExample(): Example {
  const docs = parseAllDocuments(readFileSync(join(EX, "kubernetes/pod.yaml"), "utf8")).map((d) => d.toJSON() as Obj);
  const data = (name: string): Obj => (docs.find((d) => d.kind === "ConfigMap" && (d.metadata as Obj).name === name) as Obj).data as Obj;
  return {
    name: "kubernetes/pod.yaml",
    format: "yaml",
    fluentBit: data("fluent-bit-config")["fluent-bit.yaml"] as string,
    dnsgeo: data("dnsgeo-config")["dnsgeo.yaml"] as string,
    // From the Secret, as both containers get it.
    env: { DNSGEO_AUTH_TOKEN: "test-token-0123456789abcdef" },
  };
}

const EXAMPLES: Example[] = [
  { name: "fluent-bit/fluent-bit.yaml", format: "yaml", fluentBit: readFileSync(join(EX, "fluent-bit/fluent-bit.yaml"), "utf8"), dnsgeo: readFileSync(join(EX, "fluent-bit/dnsgeo.yaml"), "utf8") },
  {
    name: "fluent-bit/fluent-bit.conf",
    format: "classic",
    fluentBit: readFileSync(join(EX, "fluent-bit/fluent-bit.conf"), "utf8"),
    dnsgeo: readFileSync(join(EX, "fluent-bit/dnsgeo.yaml"), "utf8"),
    files: { "parsers.conf": readFileSync(join(EX, "fluent-bit/parsers.conf"), "utf8") },
  },
  k8sExample(),
];

describe.skipIf(FLUENT_BIT_SKIP !== "")(`examples/ with the real Fluent Bit${FLUENT_BIT_SKIP ? ` (skipped: ${FLUENT_BIT_SKIP})` : ""}`, () => {
  const running: Array<FluentBit | DnsgeoChild> = [];
  afterEach(async () => {
    for (const p of running.splice(0).reverse()) await p.stop("SIGKILL");
  });

  it.each(readdirSync(join(EX, "fluent-bit")).filter((f) => /^fluent-bit\.(ya?ml|conf)$/.test(f)))("fluent-bit --dry-run -c examples/fluent-bit/%s passes from the repository root", async (file) => {
    // Act
    const r = await fluentBitDryRun(`examples/fluent-bit/${file}`, ROOT);
    // Assess
    expect(r.output).toContain("configuration test is successful");
    expect(r.code, r.output).toBe(0);
  });

  it.each(EXAMPLES.map((e) => [e.name, e] as const))("%s runs as written: tail → out_http → dnsgeo → in_http → stdout, every record once, enriched", async (_name, ex) => {
    // Act: only ports and paths change; half the lines are in the file before Fluent Bit starts (read_from_head), half are appended after.
    const env = ex.env ?? {};
    const { fb, records, tally: t } = await runExample({
      tmpPrefix: "dnsgeo-fb-example-",
      records: N,
      fluentBit: { config: ex.fluentBit, format: ex.format, files: ex.files, env, ports: ["8053", "9880"], readyPort: "9880" },
      // The example's data_dir is a container path; ip-api is not reachable from tests (offline data answers).
      dnsgeo: { config: ex.dnsgeo, ports: ["8053", "9880"], env: Object.assign({ DNSGEO_IPAPI_ENABLED: "false", DNSGEO_HTTP_HOST: "127.0.0.1", DNSGEO_GRPC_PORT: "0" }, env) },
      timeoutMs: 150_000,
      running,
    });

    // Assess
    expect({ arrived: t.arrived, missing: t.missing.length, duplicated: t.duplicated.length, unknown: t.unknown }).toEqual({ arrived: N, missing: 0, duplicated: 0, unknown: 0 });
    for (const r of records) {
      expect((r.dnsgeo as Obj).status, r.rid as string).toBe("enriched");
      expect(r.destination as Obj, r.rid as string).toHaveProperty("geo.country_iso_code");
    }
    // The stdout output puts its own `date` first; with json_date_key false out_http added none.
    for (const line of fb.output.split("\n").filter((l) => l.includes('"rid":"ex-'))) expect(line.match(/"date":/g)?.length ?? 0, line.slice(0, 80)).toBe(1);
    expect(fb.output).not.toMatch(/\[error\]/);
  }, 200_000);
});
