import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { ROOT, runCli, startServe } from "../../helpers/cli.js";
import { buildInfo } from "../../../src/version.js";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

describe("which build runs", () => {
  it("dnsgeo --version and -V print package.json's version and exit 0", async () => {
    // Act
    const long = await runCli(["--version"]);
    const short = await runCli(["-V"]);
    // Assess
    expect(long.code).toBe(0);
    expect(long.stdout.toString()).toBe(`${VERSION}\n`);
    expect(short.code).toBe(0);
    expect(short.stdout.toString()).toBe(`${VERSION}\n`);
  });

  it("dnsgeo serve logs its version on the start-up line and exports dnsgeo_build_info = 1 on /metrics", async () => {
    // Prepare
    const serve = await startServe({
      DNSGEO_HTTP_PORT: "0",
      DNSGEO_GRPC_ENABLED: "false",
      DNSGEO_CACHE_SQLITE_ENABLED: "false",
      DNSGEO_IPAPI_ENABLED: "false",
      DNSGEO_DATA_DIR: mkdtempSync(join(tmpdir(), "dnsgeo-version-")),
    });
    try {
      const line = serve.listening;
      // Act
      const res = await request(`http://${String(line.http)}/metrics`);
      const text = await res.body.text();
      // Assess
      const expected = buildInfo();
      expect(line).toMatchObject({ version: VERSION, node: process.versions.node });
      expect(line.commit).toBe(expected.commit);
      expect(res.statusCode).toBe(200);
      const m = /^dnsgeo_build_info\{([^}]*)\} (\S+)$/m.exec(text);
      expect(m, text.slice(0, 500)).not.toBeNull();
      expect(m?.[2]).toBe("1");
      const labels = Object.fromEntries([...(m?.[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      expect(labels).toEqual(Object.assign({ version: VERSION, node: process.versions.node }, expected.commit ? { commit: expected.commit } : {}));
    } finally {
      await serve.stop();
    }
  }, 60_000);
});
