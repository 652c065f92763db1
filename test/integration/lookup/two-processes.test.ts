/**
 * Issue 4: two real dnsgeo processes with separate SQLite files and one
 * DynamoDB table. What the first looked up from the provider is a DynamoDB hit
 * for the second: the provider is asked zero times more.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDynalite, type Dynalite } from "../../helpers/dynalite.js";
import { startFakeIpApi, type FakeIpApi } from "../../helpers/fake-ipapi.js";
import { runCli } from "../../helpers/cli.js";

const IPS = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "2606:4700:4700::1111", "208.67.222.222"];

let dyn: Dynalite;
let fake: FakeIpApi;
let dirs: string[] = [];

beforeAll(async () => {
  dyn = await startDynalite();
  fake = await startFakeIpApi();
});
afterAll(async () => {
  await fake.close();
  await dyn.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function envFor(table: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-proc-"));
  dirs.push(dir);
  return {
    DNSGEO_DATA_DIR: dir,
    DNSGEO_IPAPI_URL: fake.url,
    DNSGEO_DYNAMODB_TABLE: table,
    DNSGEO_DYNAMODB_ENDPOINT: dyn.endpoint,
    DNSGEO_DYNAMODB_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "x",
    AWS_SECRET_ACCESS_KEY: "x",
  };
}

describe("two dnsgeo processes sharing one DynamoDB table", () => {
  it("the second gets from DynamoDB what the first got from the provider", async () => {
    // Prepare
    const table = await dyn.newTable("shared");
    const first = envFor(table);
    const second = envFor(table);
    // Act: the first process asks the provider (waiting for it) and writes through on exit.
    const a = await runCli(["lookup", "--deadline-ms", "5000", ...IPS], { env: first });
    const afterFirst = fake.counts.ips;
    const b = await runCli(["lookup", "--deadline-ms", "5000", ...IPS], { env: second });
    // Assess
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(afterFirst).toBe(IPS.length);
    expect(fake.counts.ips).toBe(afterFirst);
    const answers = b.stdout.toString().trim().split("\n").map((l) => JSON.parse(l) as { ip: string; status: string; geo?: { source: string } });
    expect(answers.map((x) => x.ip)).toEqual(IPS);
    for (const x of answers) {
      expect(x.status, x.ip).toBe("enriched");
      expect(x.geo?.source, x.ip).toBe("ip-api");
    }
  }, 60_000);
});
