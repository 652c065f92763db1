/**
 * SIGHUP on the built CLI's `serve`: the policy rules file is read again and the new
 * rules tag the next records, the process keeps running (Node's default for SIGHUP is to
 * exit); a bad file on SIGHUP keeps the rules in use with one error line.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { startServe } from "../../helpers/cli.js";

async function tagsOf(base: string, ip: string): Promise<string[] | undefined> {
  const line = JSON.stringify({ query_name: "x.example.", query_type: "A", rcode: "NOERROR", answers: [{ Rdata: ip, Type: "A", Class: "IN" }], srcaddr: "10.0.0.9", version: "1.100000", query_timestamp: "2024-05-01T12:00:00Z" });
  const r = await request(`${base}/v1/enrich`, { method: "POST", body: line + "\n", headers: { "content-type": "application/x-ndjson" } });
  return (JSON.parse(await r.body.text()) as { tags?: string[] }).tags;
}

describe("dnsgeo serve and SIGHUP", () => {
  it("reloads the rules file on SIGHUP and keeps serving; a bad file keeps the rules in use", async () => {
    // Prepare: file watching off, so only the signal can reload
    const dir = mkdtempSync(join(tmpdir(), "dnsgeo-sighup-"));
    const rules = join(dir, "rules.yaml");
    writeFileSync(rules, "- name: one\n  tag: first\n  cidrs: [8.8.8.0/24]\n");
    const serve = await startServe({
      DNSGEO_HTTP_PORT: "0",
      DNSGEO_GRPC_ENABLED: "false",
      DNSGEO_CACHE_SQLITE_ENABLED: "false",
      DNSGEO_IPAPI_ENABLED: "false",
      DNSGEO_DATA_DIR: dir,
      DNSGEO_HTTP_OVERLOAD_TURN_MS: "0",
      DNSGEO_POLICY_RULES_FILE: rules,
      DNSGEO_POLICY_WATCH: "false",
      // CIDR rules need no geo data: the offline files stay closed, so the start is quick.
      DNSGEO_MMDB_ENABLED: "false",
    });
    const lines = (): Array<{ msg?: string }> => serve.log().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { msg?: string });
    const waitFor = (pred: () => boolean, ms: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = (): void => {
          if (pred()) resolve();
          else if (Date.now() - t0 > ms) reject(new Error(`timed out; stderr: ${serve.log()}`));
          else setTimeout(tick, 20);
        };
        tick();
      });
    try {
      const base = `http://${serve.http}`;
      // Act + Assess
      expect(await tagsOf(base, "8.8.8.8")).toEqual(["first"]);
      writeFileSync(rules, "- name: two\n  tag: second\n  cidrs: [8.8.8.0/24]\n");
      await new Promise((r) => setTimeout(r, 300));
      expect(await tagsOf(base, "8.8.8.8"), "no reload without the signal (watch off)").toEqual(["first"]);
      serve.child.kill("SIGHUP");
      await waitFor(() => lines().some((o) => o.msg === "policy rules reloaded"), 10_000);
      expect(await tagsOf(base, "8.8.8.8")).toEqual(["second"]);
      writeFileSync(rules, "- name: three\n  tag: third\n  countries: [not-a-code]\n");
      serve.child.kill("SIGHUP");
      await waitFor(() => lines().some((o) => (o.msg ?? "").startsWith("policy reload failed")), 10_000);
      expect(await tagsOf(base, "8.8.8.8")).toEqual(["second"]);
      expect(lines().filter((o) => (o.msg ?? "").startsWith("policy reload failed"))).toHaveLength(1);
      expect(serve.child.exitCode).toBeNull();
    } finally {
      await serve.stop();
    }
  }, 60_000);
});
