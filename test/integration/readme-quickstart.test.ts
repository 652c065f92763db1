/**
 * The README's first command starts the sidecar (`npm start`, i.e. the built CLI's
 * `serve`), and the README's curl example against it returns an enriched record.
 * The request is taken from the README text, so editing the example re-tests it.
 * ip-api is pointed at a closed local port: the answer comes from the offline data.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The README's curl example: method path, Content-Type and body. */
function readmeCurl(): { path: string; port: number; contentType: string; body: string } {
  const m = /curl -s localhost:(\d+)(\/\S+) -H '([^']+)' --data-binary \\\n\s*'([^']+)'/.exec(README);
  if (!m) throw new Error("README has no curl example of the expected shape");
  const header = m[3] as string;
  expect(header.toLowerCase().startsWith("content-type:")).toBe(true);
  return { port: Number(m[1]), path: m[2] as string, contentType: header.slice(header.indexOf(":") + 1).trim(), body: m[4] as string };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe("README quick start: `npm start`, then the curl example", () => {
  let child: ChildProcess;
  let httpAddress: string;
  let exited: Promise<number | null>;

  beforeAll(async () => {
    // Prepare: exactly what `npm start` runs, on free ports, with a fresh data dir.
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: { start: string } };
    const [cmd, ...args] = pkg.scripts.start.split(" ");
    expect(cmd).toBe("node");
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DNSGEO_")) env[k] = v;
    Object.assign(env, {
      DNSGEO_HTTP_PORT: "0",
      DNSGEO_GRPC_PORT: "0",
      DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-quickstart-")),
      DNSGEO_IPAPI_URL: `http://127.0.0.1:${await closedPort()}`,
      DNSGEO_LOG_LEVEL: "info",
    });
    child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
    exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    // The sidecar logs its bound addresses on stderr as {"msg":"listening","http":"host:port",…}.
    httpAddress = await new Promise<string>((resolve, reject) => {
      let buf = "";
      child.stderr?.on("data", (c: Buffer) => {
        buf += c.toString("utf8");
        for (const line of buf.split("\n")) {
          if (!line.includes('"listening"')) continue;
          const rec = JSON.parse(line) as { http?: string };
          if (rec.http) resolve(rec.http);
        }
      });
      child.once("exit", (code) => reject(new Error(`dnsgeo serve exited with ${String(code)} before listening: ${buf}`)));
    });
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("returns the curl example's record enriched with geo and AS data", async () => {
    // Prepare
    const curl = readmeCurl();
    expect(curl.port).toBe(8053);
    // Act
    const res = await request(`http://${httpAddress}${curl.path}`, { method: "POST", headers: { "content-type": curl.contentType }, body: curl.body });
    const text = await res.body.text();
    // Assess
    expect(res.statusCode).toBe(200);
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0] as string) as Record<string, any>;
    const sent = JSON.parse(curl.body) as Record<string, unknown>;
    for (const [k, v] of Object.entries(sent)) expect(rec[k]).toEqual(v);
    expect(["enriched", "partial"]).toContain(rec.dnsgeo.status);
    expect(rec.dns.resolved_ip).toEqual(["8.8.8.8"]);
    expect(rec.destination.ip).toBe("8.8.8.8");
    expect(rec.destination.geo.location).toEqual({ lat: expect.any(Number), lon: expect.any(Number) });
    expect(rec.destination.geo.country_iso_code).toMatch(/^[A-Z]{2}$/);
    expect(rec.destination.as.number).toBe(15169);
    expect(rec.dnsgeo.answers[0]).toMatchObject({ ip: "8.8.8.8", source: "mmdb" });
  });

  it("passes the Docker image's HEALTHCHECK command against it", () => {
    // Prepare: the `node -e` script of the Dockerfile's HEALTHCHECK.
    const df = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    const m = /HEALTHCHECK[^\n]*\n\s+CMD (\[.*\])/.exec(df);
    const argv = JSON.parse((m as RegExpExecArray)[1] as string) as string[];
    const port = httpAddress.slice(httpAddress.lastIndexOf(":") + 1);
    // Act
    const ok = spawnSync(process.execPath, argv.slice(1), { env: { DNSGEO_HTTP_PORT: port }, timeout: 10_000 });
    const down = spawnSync(process.execPath, argv.slice(1), { env: { DNSGEO_HTTP_PORT: String(Number(port) === 1 ? 2 : 1) }, timeout: 10_000 });
    // Assess
    expect(argv[0]).toBe("node");
    expect(ok.status).toBe(0);
    expect(down.status).toBe(1);
  });

  it("stops cleanly on SIGTERM", async () => {
    // Act
    child.kill("SIGTERM");
    // Assess
    expect(await exited).toBe(0);
  });
});
