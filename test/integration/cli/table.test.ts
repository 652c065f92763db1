import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { CliFailure, type CliContext } from "../../../src/cli/context.js";
import { runCli } from "../../../src/cli/program.js";
import { tableCreate, tableDescribe } from "../../../src/cli/table.js";
import { startDynalite, type Dynalite } from "../../helpers/dynalite.js";

function sink(): { out: PassThrough; text(): string } {
  const out = new PassThrough();
  let text = "";
  out.on("data", (b: Buffer) => (text += b.toString()));
  return { out, text: () => text };
}

let dyn: Dynalite;
beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn.close();
});

describe("dnsgeo table create|describe", () => {
  it("creates the table, says TTL is unsupported by this endpoint, and describes it", async () => {
    // Prepare
    const cfg = loadConfig({ overrides: { dynamodb: { table: "dnsgeo-cli", endpoint: dyn.endpoint, region: "us-east-1" } } });
    const client = dyn.client();
    const out = sink();
    const err = sink();
    // Act
    const code = await tableCreate(cfg, out.out, { client, stderr: err.out });
    const desc = sink();
    await tableDescribe(cfg, desc.out, { client, stderr: err.out });
    // Assess
    expect(code).toBe(0);
    expect(JSON.parse(out.text())).toMatchObject({ table: "dnsgeo-cli", created: true, status: "ACTIVE", ttl: "unsupported" });
    expect(err.text()).toMatch(/TTL is not supported by this endpoint/);
    expect(JSON.parse(desc.text())).toMatchObject({ table: "dnsgeo-cli", keyOk: true, keySchema: [{ name: "ip", type: "HASH" }] });
  });

  it("fails with one line naming the table when it does not exist", async () => {
    const cfg = loadConfig({ overrides: { dynamodb: { endpoint: dyn.endpoint } } });
    const err = await tableDescribe(cfg, sink().out, { table: "no-such-table", client: dyn.client() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliFailure);
    expect((err as CliFailure).exitCode).toBe(1);
    expect((err as CliFailure).message).toMatch(/^cannot describe table no-such-table: ResourceNotFoundException/);
    expect((err as CliFailure).message).not.toContain("\n");
  });

  it("exits 2 with a one-line message when no table name is configured or given", async () => {
    const out = sink();
    const err = sink();
    const ctx: CliContext = {
      loadConfig: () => loadConfig(),
      stdout: out.out,
      stderr: err.out,
      stdin: new PassThrough(),
      logger: silentLogger(),
    };
    const code = await runCli(["table", "describe"], ctx, () => undefined);
    expect(code).toBe(2);
    expect(err.text()).toMatch(/^dnsgeo: no table name: pass one or set dynamodb\.table \(DNSGEO_DYNAMODB_TABLE\)\n$/);
    expect(out.text()).toBe("");
  });
});
