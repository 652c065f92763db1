/**
 * The files under examples/ are what users copy. These tests keep them parseable
 * and tied to the code: routes, ports, config keys, QuickSight columns, the
 * DynamoDB calls the tier makes, and the field paths the ECS formatter writes.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, parseAllDocuments, type ScalarTag, type CollectionTag } from "yaml";
import { configLeaves, configSchema, envName, loadConfig } from "../../src/config.js";
import { ERROR_CODES } from "../../src/errors.js";
import { HTTP_ROUTES } from "../../src/transport/http-server.js";
import { QUICKSIGHT_SCHEMA } from "../../src/pipeline/quicksight-schema.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const EX = join(ROOT, "examples");

type Obj = Record<string, unknown>;

/** CloudFormation short-form intrinsics, kept as `{ "Fn::X": value }` like the long form. */
const CFN_TAGS: Array<ScalarTag | CollectionTag> = [];
for (const [short, long] of [
  ["Ref", "Ref"],
  ["GetAtt", "Fn::GetAtt"],
  ["Sub", "Fn::Sub"],
  ["If", "Fn::If"],
  ["Equals", "Fn::Equals"],
  ["Not", "Fn::Not"],
  ["And", "Fn::And"],
  ["Or", "Fn::Or"],
  ["Join", "Fn::Join"],
  ["Select", "Fn::Select"],
  ["Split", "Fn::Split"],
  ["ImportValue", "Fn::ImportValue"],
  ["FindInMap", "Fn::FindInMap"],
  ["Base64", "Fn::Base64"],
  ["GetAZs", "Fn::GetAZs"],
  ["Condition", "Condition"],
] as const) {
  const tag = `!${short}`;
  CFN_TAGS.push({ tag, resolve: (v: string) => ({ [long]: v }) });
  CFN_TAGS.push({ tag, collection: "seq", resolve: (seq: { toJSON(): unknown }) => ({ [long]: seq.toJSON() }) } as unknown as CollectionTag);
  CFN_TAGS.push({ tag, collection: "map", resolve: (map: { toJSON(): unknown }) => ({ [long]: map.toJSON() }) } as unknown as CollectionTag);
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out.sort();
}

const read = (rel: string): string => readFileSync(join(EX, rel), "utf8");
const yamlOf = (rel: string): Obj => parseYaml(read(rel), { customTags: CFN_TAGS }) as Obj;
const docsOf = (rel: string): Obj[] => parseAllDocuments(read(rel)).map((d) => d.toJSON() as Obj);

function get(o: unknown, path: string): unknown {
  let cur: unknown = o;
  for (const k of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Obj)[k];
  }
  return cur;
}

/** Route paths dnsgeo really serves, from the HTTP transport's own table. */
const ROUTE_PATHS = new Set(HTTP_ROUTES.map((r) => r.split(" ")[1]));
const DEFAULT_HTTP_PORT = configSchema.parse({}).http.port;

/** Loads a dnsgeo YAML example through the real config loader. */
function dnsgeoConfig(rel: string) {
  return loadConfig({ file: join(EX, rel) });
}

/** A Fluent Bit size (`16M`, `4096k`, a number of bytes) in MiB. */
function megabytes(v: unknown): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?$/.exec(String(v));
  if (!m) return 0;
  const unit = { "": 1 / 1024 / 1024, k: 1 / 1024, m: 1, g: 1024 }[(m[2] as string).toLowerCase()] as number;
  return Number(m[1]) * unit;
}

/** Classic Fluent Bit config → sections with lower-cased keys. */
function parseClassic(text: string): Array<{ section: string; props: Record<string, string> }> {
  const out: Array<{ section: string; props: Record<string, string> }> = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^\[([A-Z_]+)\]$/.exec(line);
    if (m) {
      out.push({ section: m[1] as string, props: {} });
      continue;
    }
    const cur = out[out.length - 1];
    if (!cur) throw new Error(`property outside a section: ${line}`);
    const sp = line.search(/\s/);
    expect(sp, `"${line}" has a key and a value`).toBeGreaterThan(0);
    cur.props[line.slice(0, sp).toLowerCase()] = line.slice(sp).trim();
  }
  return out;
}

describe("examples/: every YAML and JSON file parses", () => {
  const files = walk(EX).filter((f) => /\.(ya?ml|json)$/.test(f));

  it("finds the example files", () => {
    // Assess
    expect(files.map((f) => relative(EX, f))).toEqual(
      expect.arrayContaining([
        "vector/vector.yaml",
        "vector/dnsgeo.yaml",
        "fluent-bit/fluent-bit.yaml",
        "fluent-bit/dnsgeo.yaml",
        "aws/dynamodb-table.yaml",
        "aws/iam-policy.json",
        "elastic/index-template.json",
        "kubernetes/pod.yaml",
      ]),
    );
  });

  it.each(files.map((f) => [relative(EX, f), f]))("%s", (_rel, file) => {
    // Act
    const text = readFileSync(file, "utf8");
    // Assess
    if (file.endsWith(".json")) {
      expect(() => JSON.parse(text)).not.toThrow();
      return;
    }
    const docs = parseAllDocuments(text, { customTags: CFN_TAGS });
    for (const d of docs) expect(d.errors, `${file}: ${d.errors.map((e) => e.message).join("; ")}`).toEqual([]);
    expect(docs.length).toBeGreaterThan(0);
  });
});

describe("examples/: environment variables", () => {
  it("names only DNSGEO_ variables the config loader knows (or error codes)", () => {
    // Prepare
    const known = new Set<string>(["DNSGEO_CONFIG", ...[...configLeaves().keys()].map(envName), ...Object.keys(ERROR_CODES)]);
    const files = [...walk(EX), join(ROOT, "Dockerfile")];
    // Act
    const named = files.flatMap((f) => [...readFileSync(f, "utf8").matchAll(/\bDNSGEO_[A-Z0-9_]+/g)].map((m) => [relative(ROOT, f), m[0]] as const));
    // Assess
    expect(named.length).toBeGreaterThan(5);
    for (const [f, n] of named) expect(known.has(n), `${f}: ${n}`).toBe(true);
  });
});

describe("examples/vector", () => {
  const vector = yamlOf("vector/vector.yaml");
  const cfg = dnsgeoConfig("vector/dnsgeo.yaml");
  const sink = get(vector, "sinks.dnsgeo") as Obj;

  it("sends NDJSON with gzip and end-to-end acknowledgements to dnsgeo's /v1/forward", () => {
    // Act
    const uri = new URL(sink.uri as string);
    // Assess
    expect(sink.type).toBe("http");
    expect(ROUTE_PATHS.has(uri.pathname)).toBe(true);
    expect(uri.pathname).toBe("/v1/forward");
    expect(Number(uri.port)).toBe(cfg.http.port);
    expect(uri.hostname).toBe(cfg.http.host);
    expect(get(sink, "encoding.codec")).toBe("json");
    expect(get(sink, "framing.method")).toBe("newline_delimited");
    expect(sink.compression).toBe("gzip");
    // Vector's default retries are already without limit; a number here would only cap them.
    expect(get(sink, "request.retry_attempts")).toBeUndefined();
  });

  it("acknowledges end to end: globally, so also on the sinks behind the http_server source", () => {
    // Assess: http_server answers dnsgeo only once the sinks fed by it delivered.
    expect(get(vector, "acknowledgements.enabled")).toBe(true);
    for (const [name, s] of Object.entries(vector.sinks as Obj)) expect(get(s, "acknowledgements.enabled"), name).not.toBe(false);
  });

  it("has dnsgeo forward to the http_server source that feeds the output", () => {
    // Prepare
    const src = get(vector, "sources.dnsgeo_enriched") as Obj;
    const forward = new URL(cfg.forward.url as string);
    // Assess
    expect(src.type).toBe("http_server");
    expect(src.address).toBe(`${forward.hostname}:${forward.port}`);
    expect(src.path).toBe(forward.pathname);
    expect(get(src, "decoding.codec")).toBe("json");
    expect(get(src, "framing.method")).toBe("newline_delimited");
    expect(cfg.forward.framing).toBe("ndjson");
    expect(forward.port).not.toBe(String(cfg.http.port));
    expect(get(vector, "sinks.console.inputs")).toEqual(["dnsgeo_enriched"]);
  });

  it("does not send enriched records back into dnsgeo (no loop)", () => {
    // Assess
    expect(sink.inputs).not.toContain("dnsgeo_enriched");
  });
});

describe("examples/fluent-bit", () => {
  const cfg = dnsgeoConfig("fluent-bit/dnsgeo.yaml");
  const forward = new URL(cfg.forward.url as string);
  /** in_http derives the tag from the request path. */
  const tag = forward.pathname.replace(/^\//, "").replace(/\//g, "_");

  it("has dnsgeo send newline-separated JSON as application/json, which in_http accepts", () => {
    // Assess
    expect(cfg.forward.content_type).toBe("application/json");
    expect(cfg.forward.framing).toBe("ndjson");
    expect(tag).toBe("dns_enriched");
  });

  it("YAML: tail → out_http (json_lines, gzip, retries) → /v1/forward; in_http on the forward port → outputs", () => {
    // Prepare
    const fb = yamlOf("fluent-bit/fluent-bit.yaml");
    const inputs = get(fb, "pipeline.inputs") as Obj[];
    const outputs = get(fb, "pipeline.outputs") as Obj[];
    const out = outputs.find((o) => o.name === "http") as Obj;
    const tail = inputs.find((i) => i.name === "tail") as Obj;
    const inHttp = inputs.find((i) => i.name === "http") as Obj;
    // Assess
    expect(ROUTE_PATHS.has(out.uri as string)).toBe(true);
    expect(out.uri).toBe("/v1/forward");
    expect(out.port).toBe(cfg.http.port);
    expect(out.host).toBe(cfg.http.host);
    expect(out.format).toBe("json_lines");
    expect(out.compress).toBe("gzip");
    expect(String(out.retry_limit)).not.toBe("1");
    expect(out.json_date_key).toBe(false);
    expect(out.match).toBe(tail.tag);
    expect(tail["storage.type"]).toBe("filesystem");
    expect(inHttp["storage.type"]).toBe("filesystem");
    expect(get(fb, "service")).toHaveProperty(["storage.path"]);
    expect(megabytes(inHttp.buffer_max_size)).toBeGreaterThan(4);
    expect(inHttp.port).toBe(Number(forward.port));
    expect(inHttp.listen).toBe(forward.hostname);
    expect(outputs.some((o) => o.name !== "http" && o.match === tag)).toBe(true);
    expect(out.match).not.toBe(tag);
  });

  it("classic .conf: its Parsers_File is next to it and defines the tail input's parser", () => {
    // Prepare: Fluent Bit reads a relative Parsers_File from the config's folder.
    const service = parseClassic(read("fluent-bit/fluent-bit.conf")).find((s) => s.section === "SERVICE")?.props ?? {};
    const tail = parseClassic(read("fluent-bit/fluent-bit.conf")).find((s) => s.section === "INPUT" && s.props.name === "tail")?.props ?? {};
    // Act
    const parsers = parseClassic(read(`fluent-bit/${service.parsers_file ?? "missing"}`)).filter((s) => s.section === "PARSER");
    // Assess
    expect(parsers.map((p) => p.props.name)).toContain(tail.parser);
    expect(parsers.find((p) => p.props.name === tail.parser)?.props.format).toBe("json");
  });

  it("classic .conf: the same pipeline", () => {
    // Prepare
    const sections = parseClassic(read("fluent-bit/fluent-bit.conf"));
    const outputs = sections.filter((s) => s.section === "OUTPUT").map((s) => s.props);
    const inputs = sections.filter((s) => s.section === "INPUT").map((s) => s.props);
    const out = outputs.find((o) => o.name === "http") as Record<string, string>;
    const inHttp = inputs.find((i) => i.name === "http") as Record<string, string>;
    const tail = inputs.find((i) => i.name === "tail") as Record<string, string>;
    // Assess
    expect(out.uri).toBe("/v1/forward");
    expect(Number(out.port)).toBe(cfg.http.port);
    expect(out.format).toBe("json_lines");
    expect(out.compress).toBe("gzip");
    expect(out.retry_limit).toBe("no_limits");
    expect(out.json_date_key).toBe("false");
    expect(out.match).toBe(tail.tag);
    expect(tail["storage.type"]).toBe("filesystem");
    expect(inHttp["storage.type"]).toBe("filesystem");
    expect(megabytes(inHttp.buffer_max_size)).toBeGreaterThan(4);
    expect(Number(inHttp.port)).toBe(Number(forward.port));
    expect(outputs.some((o) => o.name !== "http" && o.match === tag)).toBe(true);
  });
});

describe("examples/kubernetes/pod.yaml", () => {
  const docs = docsOf("kubernetes/pod.yaml");
  const pod = docs.find((d) => d.kind === "Pod") as Obj;
  const initContainers = (get(pod, "spec.initContainers") ?? []) as Obj[];
  const containers = get(pod, "spec.containers") as Obj[];
  const dnsgeo = initContainers.find((c) => c.name === "dnsgeo") as Obj;
  const fluentBit = containers.find((c) => c.name === "fluent-bit") as Obj;
  const env = Object.fromEntries((dnsgeo.env as Obj[]).map((e) => [e.name, e.value]));

  it("runs dnsgeo as a native sidecar of Fluent Bit, with probes on /livez and /readyz", () => {
    // Prepare
    const port = (dnsgeo.ports as Obj[])[0] as Obj;
    // Assess: an init container with restartPolicy Always starts before and stops after the containers.
    expect(initContainers.map((c) => c.name)).toEqual(["dnsgeo"]);
    expect(dnsgeo.restartPolicy).toBe("Always");
    expect(containers.map((c) => c.name)).toEqual(["fluent-bit"]);
    expect(get(dnsgeo, "livenessProbe.httpGet.path")).toBe("/livez");
    expect(get(dnsgeo, "readinessProbe.httpGet.path")).toBe("/readyz");
    expect(ROUTE_PATHS.has("/livez") && ROUTE_PATHS.has("/readyz")).toBe(true);
    expect(get(dnsgeo, "livenessProbe.httpGet.port")).toBe(port.name);
    expect(port.containerPort).toBe(DEFAULT_HTTP_PORT);
  });

  it("confines both containers: RuntimeDefault seccomp, every capability dropped, non-root, read-only root", () => {
    // Assess
    for (const c of [dnsgeo, fluentBit]) {
      expect(get(c, "securityContext.seccompProfile.type"), c.name as string).toBe("RuntimeDefault");
      expect(get(c, "securityContext.capabilities.drop"), c.name as string).toEqual(["ALL"]);
      expect(get(c, "securityContext.allowPrivilegeEscalation"), c.name as string).toBe(false);
      expect(get(c, "securityContext.readOnlyRootFilesystem"), c.name as string).toBe(true);
    }
    expect(get(pod, "spec.securityContext.runAsNonRoot")).toBe(true);
  });

  it("runs a current Fluent Bit (5.x) with filesystem storage on the state volume", () => {
    // Prepare
    const cm = docs.find((d) => d.kind === "ConfigMap" && get(d, "metadata.name") === "fluent-bit-config") as Obj;
    const fb = parseYaml((cm.data as Obj)["fluent-bit.yaml"] as string) as Obj;
    const state = (fluentBit.volumeMounts as Obj[]).find((m) => m.name === "fluent-bit-state") as Obj;
    // Assess
    expect(fluentBit.image).toMatch(/^fluent\/fluent-bit:5\.\d+\.\d+$/);
    expect(String(get(fb, "service")?.["storage.path" as never])).toMatch(new RegExp(`^${state.mountPath as string}/`));
    for (const i of get(fb, "pipeline.inputs") as Obj[]) expect(i["storage.type"], i.name as string).toBe("filesystem");
  });

  it("keeps the SQLite file on a volume at /data and configures dnsgeo by ConfigMap and env", () => {
    // Prepare
    const mounts = dnsgeo.volumeMounts as Obj[];
    const dataMount = mounts.find((m) => m.mountPath === "/data") as Obj;
    const volumes = get(pod, "spec.volumes") as Obj[];
    const cm = docs.find((d) => d.kind === "ConfigMap" && get(d, "metadata.name") === "dnsgeo-config") as Obj;
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-examples-"));
    const file = join(dir, "dnsgeo.yaml");
    writeFileSync(file, (cm.data as Obj)["dnsgeo.yaml"] as string);
    // Act
    const cfg = loadConfig({ file, env: { DNSGEO_DATA_DIR: env.DNSGEO_DATA_DIR as string, DNSGEO_HTTP_HOST: "0.0.0.0" } });
    // Assess
    expect(env.DNSGEO_DATA_DIR).toBe("/data");
    expect(env.DNSGEO_CONFIG).toBe(`${(mounts.find((m) => m.name === "dnsgeo-config") as Obj).mountPath as string}/dnsgeo.yaml`);
    expect(volumes.some((v) => v.name === dataMount.name && (v.emptyDir !== undefined || v.persistentVolumeClaim !== undefined))).toBe(true);
    expect(cfg.data_dir).toBe("/data");
    expect(cfg.forward.content_type).toBe("application/json");
  });

  it("has the Fluent Bit side send to dnsgeo's /v1/forward and listen where dnsgeo forwards", () => {
    // Prepare
    const cm = docs.find((d) => d.kind === "ConfigMap" && get(d, "metadata.name") === "fluent-bit-config") as Obj;
    const fb = parseYaml((cm.data as Obj)["fluent-bit.yaml"] as string) as Obj;
    const dcm = docs.find((d) => d.kind === "ConfigMap" && get(d, "metadata.name") === "dnsgeo-config") as Obj;
    const dcfg = parseYaml((dcm.data as Obj)["dnsgeo.yaml"] as string) as Obj;
    const out = (get(fb, "pipeline.outputs") as Obj[]).find((o) => o.name === "http") as Obj;
    const inHttp = (get(fb, "pipeline.inputs") as Obj[]).find((i) => i.name === "http") as Obj;
    // Assess
    expect(out.uri).toBe("/v1/forward");
    expect(out.port).toBe(get(dcfg, "http.port"));
    expect(String(new URL(get(dcfg, "forward.url") as string).port)).toBe(String(inHttp.port));
  });
});

describe("examples/aws", () => {
  it("CloudFormation: key ip (S), on-demand, TTL on expires_at, SSE on, PITR off by default", () => {
    // Prepare
    const cfn = yamlOf("aws/dynamodb-table.yaml");
    const table = Object.values(cfn.Resources as Obj).find((r) => (r as Obj).Type === "AWS::DynamoDB::Table") as Obj;
    const p = table.Properties as Obj;
    // Assess
    expect(p.KeySchema).toEqual([{ AttributeName: "ip", KeyType: "HASH" }]);
    expect(p.AttributeDefinitions).toEqual([{ AttributeName: "ip", AttributeType: "S" }]);
    expect(p.BillingMode).toBe("PAY_PER_REQUEST");
    expect(p.TimeToLiveSpecification).toEqual({ AttributeName: "expires_at", Enabled: true });
    expect(p.SSESpecification).toEqual({ SSEEnabled: true });
    expect(get(p, "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled")).toEqual({ "Fn::If": ["PitrOn", true, false] });
    expect(get(cfn, "Parameters.PointInTimeRecovery.Default")).toBe("false");
  });

  it("create-table.sh creates the same table and turns TTL on", () => {
    // Act
    const sh = read("aws/create-table.sh");
    // Assess
    expect(sh).toContain("aws dynamodb create-table");
    expect(sh).toContain("AttributeName=ip,AttributeType=S");
    expect(sh).toContain("AttributeName=ip,KeyType=HASH");
    expect(sh).toContain("--billing-mode PAY_PER_REQUEST");
    expect(sh).toMatch(/aws dynamodb update-time-to-live[\s\\]+--table-name "\$TABLE"[\s\\]+--time-to-live-specification "Enabled=true,AttributeName=expires_at"/);
    expect(sh.startsWith("#!/usr/bin/env bash\n")).toBe(true);
    expect(statSync(join(EX, "aws/create-table.sh")).mode & 0o111).not.toBe(0);
  });

  it("the IAM policy allows every DynamoDB call the running tier makes, on the table ARN only", () => {
    // Prepare: SDK command class names used by the tier (and the fleet budget, when present).
    const sources = ["src/lookup/dynamodb-tier.ts", "src/lookup/fleet-budget.ts"]
      .map((f) => join(ROOT, f))
      .filter((f) => {
        try {
          return statSync(f).isFile();
        } catch {
          return false;
        }
      })
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    const commands = new Set([...sources.matchAll(/new (\w+)Command\(/g)].map((m) => m[1] as string));
    const toAction: Record<string, string> = {
      BatchGet: "BatchGetItem",
      BatchWrite: "BatchWriteItem",
      BatchGetItem: "BatchGetItem",
      BatchWriteItem: "BatchWriteItem",
      Get: "GetItem",
      GetItem: "GetItem",
      Put: "PutItem",
      PutItem: "PutItem",
      Update: "UpdateItem",
      UpdateItem: "UpdateItem",
      DescribeTable: "DescribeTable",
      DescribeTimeToLive: "DescribeTimeToLive",
    };
    // Table set-up only (`dnsgeo table create`, create-table.sh): not the sidecar's job.
    const adminOnly = new Set(["CreateTable", "UpdateTimeToLive"]);
    const policy = JSON.parse(read("aws/iam-policy.json")) as { Statement: Array<{ Effect: string; Action: string[]; Resource: string }> };
    const allowed = new Set(policy.Statement.filter((s) => s.Effect === "Allow").flatMap((s) => s.Action));
    // Act
    const needed = [...commands].filter((c) => !adminOnly.has(c)).map((c) => toAction[c] ?? `unknown command ${c}`);
    // Assess
    expect(commands.has("BatchGet") && commands.has("BatchWrite")).toBe(true);
    for (const a of needed) expect(allowed.has(`dynamodb:${a}`), a).toBe(true);
    for (const a of ["GetItem", "BatchGetItem", "PutItem", "BatchWriteItem", "UpdateItem", "DescribeTable", "DescribeTimeToLive"]) {
      expect(allowed.has(`dynamodb:${a}`), a).toBe(true);
    }
    expect([...allowed].every((a) => a.startsWith("dynamodb:") && !a.includes("*"))).toBe(true);
    for (const s of policy.Statement) expect(s.Resource).toMatch(/^arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table\/[\w.-]+$/);
  });
});

/** Every dotted path (arrays flattened) of the objects in a golden output. */
function leafPaths(v: unknown, prefix: string, out: Set<string>): void {
  if (Array.isArray(v)) {
    for (const x of v) leafPaths(x, prefix, out);
    return;
  }
  if (v !== null && typeof v === "object") {
    const o = v as Obj;
    // A geo_point object {lat, lon} is one field.
    if (prefix.endsWith(".location")) {
      out.add(prefix);
      return;
    }
    for (const [k, x] of Object.entries(o)) leafPaths(x, prefix ? `${prefix}.${k}` : k, out);
    return;
  }
  out.add(prefix);
}

function mappingAt(props: Obj, path: string): Obj | undefined {
  let cur: Obj | undefined = { properties: props };
  for (const k of path.split(".")) {
    cur = (cur?.properties as Obj | undefined)?.[k] as Obj | undefined;
    if (!cur) return undefined;
  }
  return cur;
}

describe("examples/elastic/index-template.json", () => {
  const tpl = JSON.parse(read("elastic/index-template.json")) as Obj;
  const props = get(tpl, "template.mappings.properties") as Obj;
  const golden = readdirSync(join(ROOT, "test/fixtures/expected")).filter((f) => f.endsWith(".ecs.json"));
  const paths = new Set<string>();
  for (const f of golden) {
    const doc = JSON.parse(readFileSync(join(ROOT, "test/fixtures/expected", f), "utf8")) as { items: unknown[] };
    for (const item of doc.items) leafPaths(item, "", paths);
  }
  const written = [...paths].filter((p) => p.startsWith("dnsgeo.") || p.startsWith("destination.") || p === "dns.resolved_ip");

  it("is a composable template (index_patterns + template.mappings)", () => {
    // Assess
    expect(Array.isArray(tpl.index_patterns)).toBe(true);
    expect(props).toBeDefined();
    expect(written.length).toBeGreaterThan(20);
  });

  it("maps every geo.location dnsgeo writes as geo_point", () => {
    // Prepare
    const locations = written.filter((p) => p.endsWith(".geo.location"));
    // Assess
    expect(locations.sort()).toEqual(["destination.geo.location", "dnsgeo.answers.geo.location"]);
    for (const p of locations) expect(mappingAt(props, p)?.type, p).toBe("geo_point");
  });

  it("maps every other field dnsgeo writes, with IPs as ip and AS/ISP/ORG as keyword", () => {
    // Assess
    for (const p of written) expect(mappingAt(props, p)?.type, p).toBeDefined();
    for (const p of ["dns.resolved_ip", "destination.ip", "dnsgeo.answers.ip"]) expect(mappingAt(props, p)?.type, p).toBe("ip");
    for (const p of ["dnsgeo.answers.isp", "dnsgeo.answers.org", "dnsgeo.answers.as.organization.name", "destination.as.organization.name", "dnsgeo.status"]) {
      expect(mappingAt(props, p)?.type, p).toBe("keyword");
    }
    expect(mappingAt(props, "dnsgeo.answers.as.number")?.type).toBe("long");
  });
});

describe("examples/quicksight/athena-table.sql", () => {
  const sql = read("quicksight/athena-table.sql");
  const declared = [...sql.matchAll(/^\s+`?(\w+)`?\s+(string|double|bigint|int|boolean|timestamp)\b/gm)].map((m) => [m[1] as string, m[2] as string] as const);

  it("declares exactly the columns of QUICKSIGHT_SCHEMA, in order, with its types", () => {
    // Assess
    expect(declared).toEqual(QUICKSIGHT_SCHEMA.map((c) => [c.name, c.type]));
  });

  it("lists every column of the golden QuickSight rows of every kind", () => {
    // Prepare
    const names = new Set(declared.map(([n]) => n));
    const wanted = new Set<string>();
    for (const f of readdirSync(join(ROOT, "test/fixtures/expected")).filter((n) => n.endsWith(".quicksight.json"))) {
      const doc = JSON.parse(readFileSync(join(ROOT, "test/fixtures/expected", f), "utf8")) as { items: unknown[] };
      for (const row of doc.items) if (row !== null && typeof row === "object") for (const k of Object.keys(row)) wanted.add(k);
    }
    // Assess
    expect(wanted.size).toBeGreaterThan(0);
    for (const c of wanted) expect(names.has(c), c).toBe(true);
  });

  it("types the coordinates and AS number as numbers", () => {
    // Assess
    expect(sql).toMatch(/^\s+geo_lat\s+double/m);
    expect(sql).toMatch(/^\s+geo_lon\s+double/m);
    expect(sql).toMatch(/^\s+as_number\s+bigint/m);
  });
});

describe("Dockerfile", () => {
  const df = readFileSync(join(ROOT, "Dockerfile"), "utf8");

  it("builds on node:24-bookworm-slim (an LTS line) in two stages and runs serve as a non-root user under tini", () => {
    // Prepare
    const froms = [...df.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    // Assess
    expect(froms).toEqual(["node:24-bookworm-slim", "node:24-bookworm-slim"]);
    expect(df).toMatch(/^USER 10001:10001$/m);
    expect(df).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
    expect(df).toMatch(/^CMD \["node", "dist\/src\/main\.js", "serve"\]$/m);
    expect(df).toMatch(/^EXPOSE 8053 8054$/m);
    expect(df).toMatch(/^VOLUME \["\/data"\]$/m);
    expect(df).toContain("DNSGEO_DATA_DIR=/data");
    expect(df).toMatch(/HEALTHCHECK [^\n]*\n\s+CMD \["node", "-e", "[^\n]*'\/livez'/);
  });

  it("labels the image with the OCI keys: title, version (package.json's), revision, created, licence (package.json's), base image", () => {
    // Prepare
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; license: string };
    const runtime = df.slice(df.lastIndexOf("\nFROM "));
    const labels = new Map([...runtime.matchAll(/(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    // Assess
    expect(labels.get("org.opencontainers.image.title")).toBe("dnsgeo");
    expect(labels.get("org.opencontainers.image.version")).toBe("$VERSION");
    expect(runtime).toMatch(new RegExp(`^ARG VERSION=${pkg.version.replace(/\./g, "\\.")}$`, "m"));
    expect(labels.get("org.opencontainers.image.revision")).toBe("$VCS_REF");
    expect(labels.get("org.opencontainers.image.created")).toBe("$BUILD_DATE");
    expect(labels.get("org.opencontainers.image.licenses")).toBe(pkg.license);
    expect(labels.get("org.opencontainers.image.base.name")).toBe("docker.io/library/node:24-bookworm-slim");
  });

  it("puts no bench, test or dev files in the runtime image: it copies only the build's package.json, build info, pruned node_modules, dist/src and the proto", () => {
    // Prepare
    const build = df.slice(df.indexOf("\nFROM "), df.lastIndexOf("\nFROM "));
    const runtime = df.slice(df.lastIndexOf("\nFROM "));
    const copies = [...runtime.matchAll(/^COPY (.*)$/gm)].map((m) => m[1]);
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    // Assess
    expect(build).not.toMatch(/^COPY (bench|test)\b/m);
    expect(build).toMatch(/npm prune --omit=dev/);
    expect(copies).toEqual([
      "--from=build /app/package.json /app/build-info.json ./",
      "--from=build /app/node_modules ./node_modules",
      "--from=build /app/dist/src ./dist/src",
      "--from=build /app/proto ./proto",
    ]);
    for (const dir of ["test", "bench", "node_modules", "dist", ".git"]) expect(ignored, dir).toContain(dir);
  });

  it("only names environment variables that are config keys", () => {
    // Prepare
    const names = new Set([...df.matchAll(/\bDNSGEO_[A-Z0-9_]+/g)].map((m) => m[0]));
    // Act
    const env = Object.fromEntries([...names].map((n) => [n, n.endsWith("PORT") ? "8053" : n.endsWith("CERT_FILE") ? "" : "x"]));
    // Assess
    expect(names.size).toBeGreaterThan(3);
    expect(() => loadConfig({ env: Object.assign(env, { DNSGEO_HTTP_HOST: "0.0.0.0", DNSGEO_GRPC_HOST: "0.0.0.0" }) })).not.toThrow();
  });
});
