/**
 * Every Fluent Bit config under examples/ runs as written with the real Fluent Bit
 * and a real `dnsgeo serve` configured by the example's own dnsgeo config: only
 * ports and paths are substituted (plain string replacement), and records written
 * to the tailed file must come out of Fluent Bit's stdout output exactly once,
 * enriched. `fluent-bit --dry-run` accepts every config in examples/fluent-bit/ run
 * from the repository root, as its README says.
 */
import { afterEach, describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { publicIp, route53Record } from "../../helpers/shipper.js";
import { FLUENT_BIT_SKIP, ROOT, countIds, fluentBitDryRun, freePort, startDnsgeo, startFluentBit, tally, waitUntil, type DnsgeoChild, type FluentBit } from "../../helpers/fluent-bit.js";

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

/** Replaces every occurrence of each key by its value; each key must occur. */
function substitute(text: string, subs: Record<string, string>): string {
  let out = text;
  for (const [from, to] of Object.entries(subs)) {
    expect(out.includes(from), `"${from}" occurs in the example`).toBe(true);
    out = out.split(from).join(to);
  }
  return out;
}

/** `n` Route 53 lines with ids `<prefix>-<i>` and public answers. */
function lines(prefix: string, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += route53Record(`${prefix}-${i}`, [publicIp(i * 7919), publicIp(i * 104729 + 13)]) + "\n";
  return s;
}

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
    // Prepare: only ports and paths change.
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-fb-example-"));
    for (const d of ["logs", "state", "data"]) mkdirSync(join(dir, d));
    const dnsgeoPort = String(await freePort());
    const inHttpPort = String(await freePort());
    const fbConfig = substitute(ex.fluentBit, { "/var/log/dns": join(dir, "logs"), "/var/lib/fluent-bit": join(dir, "state"), "8053": dnsgeoPort, "9880": inHttpPort });
    const dnsgeoFile = join(dir, "dnsgeo.yaml");
    writeFileSync(dnsgeoFile, substitute(ex.dnsgeo, { "8053": dnsgeoPort, "9880": inHttpPort }));
    const env = ex.env ?? {};
    // The example's data_dir is a container path; ip-api is not reachable from tests (offline data answers).
    const dnsgeo = await startDnsgeo(dnsgeoFile, Object.assign({ DNSGEO_DATA_DIR: join(dir, "data"), DNSGEO_IPAPI_ENABLED: "false", DNSGEO_HTTP_HOST: "127.0.0.1", DNSGEO_GRPC_PORT: "0" }, env));
    running.push(dnsgeo);
    const log = join(dir, "logs", "route53.ndjson");
    // Half the lines are in the file before Fluent Bit starts (read_from_head), half are appended after.
    writeFileSync(log, lines("ex", 0, N / 2));
    const fb = await startFluentBit({ config: fbConfig, format: ex.format, files: ex.files, dir: join(dir, "fb"), env, readyPorts: [Number(inHttpPort)] });
    running.push(fb);

    // Act
    appendFileSync(log, lines("ex", N / 2, N));
    await waitUntil(() => countIds(fb.jsonLines()).size >= N, 150_000, `${N} records on Fluent Bit's stdout`);
    await new Promise((r) => setTimeout(r, 1500)); // a duplicate would arrive within the next flush

    // Assess
    const records = fb.jsonLines().filter((r) => typeof r.rid === "string");
    const t = tally(Array.from({ length: N }, (_, i) => `ex-${i}`), countIds(records));
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
