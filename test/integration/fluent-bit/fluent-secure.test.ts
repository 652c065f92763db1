/**
 * The forward listener's shared-key handshake (HELO/PING/PONG) and TLS, against the real
 * Fluent Bit out_forward with `shared_key` and `tls on` (verifying dnsgeo's certificate
 * against a throwaway CA): tail → out_forward → dnsgeo (fluent.shared_key, fluent.tls) →
 * in_forward → stdout. The right key: every record arrives enriched. A wrong key: the
 * PONG refuses it and not one of its records arrives.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { publicIp, route53Record } from "../../helpers/shipper.js";
import { hasOpenssl, makeTestCerts } from "../../helpers/certs.js";
import { FLUENT_BIT_SKIP, countIds, freePort, startFluentBit, waitUntil, type FluentBit } from "../../helpers/fluent-bit.js";
import { startHarness, type Harness } from "../transport/harness.js";

type Obj = Record<string, unknown>;
const N = 50;
const skip = FLUENT_BIT_SKIP !== "" || !hasOpenssl();
const why = FLUENT_BIT_SKIP ? ` (skipped: ${FLUENT_BIT_SKIP})` : !hasOpenssl() ? " (skipped: no openssl CLI to make test certificates)" : "";

function sourceConfig(file: string, port: number, key: string, caFile: string): string {
  return `service:
  flush: 0.5
  log_level: info
parsers:
  - name: dns_json
    format: json
pipeline:
  inputs:
    - name: tail
      path: ${file}
      parser: dns_json
      read_from_head: true
  outputs:
    - name: forward
      match: "*"
      host: 127.0.0.1
      port: ${port}
      shared_key: ${key}
      self_hostname: fluent-bit-test
      require_ack_response: true
      tls: on
      tls.verify: on
      tls.ca_file: ${caFile}
`;
}

describe.skipIf(skip)(`forward listener with a shared key and TLS, real Fluent Bit out_forward${why}`, () => {
  let h: Harness | undefined;
  const fbs: FluentBit[] = [];
  afterEach(async () => {
    await h?.close();
    for (const f of fbs.splice(0)) await f.stop("SIGKILL");
  });

  it("takes the records of a client with the right key over TLS, enriched, and refuses a wrong key", async () => {
    // Prepare
    const certs = makeTestCerts();
    const sinkPort = await freePort();
    const sink = await startFluentBit({
      format: "yaml",
      config: `service:\n  flush: 0.5\npipeline:\n  inputs:\n    - name: forward\n      listen: 127.0.0.1\n      port: ${sinkPort}\n  outputs:\n    - name: stdout\n      match: "*"\n      format: json_lines\n`,
      readyPorts: [sinkPort],
    });
    fbs.push(sink);
    h = await startHarness({
      fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, shared_key: "right-key", tls: { cert_file: certs.serverCertFile, key_file: certs.serverKeyFile } },
    });
    const port = Number((h.serve.fluentAddress ?? "").split(":").pop());
    const lines = (prefix: string): string => Array.from({ length: N }, (_, i) => route53Record(`${prefix}-${i}`, [publicIp(i * 31 + 7)])).join("\n") + "\n";
    const goodFile = join(certs.dir, "good.ndjson");
    const badFile = join(certs.dir, "bad.ndjson");
    writeFileSync(goodFile, lines("good"));
    writeFileSync(badFile, lines("bad"));
    // Act
    const good = await startFluentBit({ format: "yaml", config: sourceConfig(goodFile, port, "right-key", certs.caFile) });
    fbs.push(good);
    const bad = await startFluentBit({ format: "yaml", config: sourceConfig(badFile, port, "wrong-key", certs.caFile) });
    fbs.push(bad);
    const ids = (): Map<string, number> => countIds(sink.jsonLines());
    await waitUntil(() => [...ids().keys()].filter((k) => k.startsWith("good-")).length >= N, 30_000, `${N} records of the right key`).catch((e: Error) => {
      throw new Error(`${e.message}; the client logged: ${good.output.slice(-1500)}`);
    });
    // The wrong key's client retries; give it time to have tried more than once.
    await waitUntil(() => (bad.output.match(/PONG|handshake|auth|shared/gi) ?? []).length >= 1, 15_000, "the wrong key's client to log its refusal");
    await new Promise((r) => setTimeout(r, 2000));
    // Assess
    const got = ids();
    const goodIds = [...got.keys()].filter((k) => k.startsWith("good-"));
    expect(goodIds.length).toBe(N);
    expect([...got.keys()].filter((k) => k.startsWith("bad-"))).toEqual([]);
    for (const r of sink.jsonLines().filter((x: Obj) => String(x.rid).startsWith("good-"))) {
      expect((r.dnsgeo as Obj | undefined)?.status, String(r.rid)).toMatch(/^(enriched|partial)$/);
    }
    expect(good.output).not.toMatch(/\[error\]/);
  }, 90_000);

  it("sends to a next hop whose in_forward wants a shared key and TLS (fluent.next_hop_shared_key, fluent.next_hop_tls); a wrong key delivers nothing", async () => {
    // Prepare: the next hop is an in_forward with shared_key and TLS on (the test CA's server certificate).
    const certs = makeTestCerts();
    const sinkPort = await freePort();
    const sink = await startFluentBit({
      format: "yaml",
      config: `service:\n  flush: 0.5\npipeline:\n  inputs:\n    - name: forward\n      listen: 127.0.0.1\n      port: ${sinkPort}\n      shared_key: hop-key\n      self_hostname: sink\n      tls: on\n      tls.verify: off\n      tls.crt_file: ${certs.serverCertFile}\n      tls.key_file: ${certs.serverKeyFile}\n  outputs:\n    - name: stdout\n      match: "*"\n      format: json_lines\n`,
      readyPorts: [sinkPort],
    });
    fbs.push(sink);
    const hopTls = { enabled: true, ca_file: certs.caFile };
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, next_hop_shared_key: "hop-key", next_hop_tls: hopTls, timeout_ms: 3000 } });
    const wrong = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, next_hop_shared_key: "not-the-key", next_hop_tls: hopTls, timeout_ms: 3000 } });
    const portOf = (x: Harness): number => Number((x.serve.fluentAddress ?? "").split(":").pop());
    const lines = (prefix: string): string => Array.from({ length: N }, (_, i) => route53Record(`${prefix}-${i}`, [publicIp(i * 31 + 7)])).join("\n") + "\n";
    const rightFile = join(certs.dir, "right.ndjson");
    const wrongFile = join(certs.dir, "wrong.ndjson");
    writeFileSync(rightFile, lines("right"));
    writeFileSync(wrongFile, lines("wrong"));
    const plainSource = (file: string, port: number): string =>
      `service:\n  flush: 0.5\nparsers:\n  - name: dns_json\n    format: json\npipeline:\n  inputs:\n    - name: tail\n      path: ${file}\n      parser: dns_json\n      read_from_head: true\n  outputs:\n    - name: forward\n      match: "*"\n      host: 127.0.0.1\n      port: ${port}\n      require_ack_response: true\n`;
    try {
      // Act
      fbs.push(await startFluentBit({ format: "yaml", config: plainSource(rightFile, portOf(h)) }));
      fbs.push(await startFluentBit({ format: "yaml", config: plainSource(wrongFile, portOf(wrong)) }));
      const ids = (): Map<string, number> => countIds(sink.jsonLines());
      await waitUntil(() => [...ids().keys()].filter((k) => k.startsWith("right-")).length >= N, 30_000, `${N} records through the right key`);
      const failed = async (): Promise<number> => (await wrong.app.metrics.fluentNextHopMessages.get()).values.find((v) => v.labels.result === "failed")?.value ?? 0;
      const until = Date.now() + 15_000;
      while ((await failed()) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      // Assess
      expect([...ids().keys()].filter((k) => k.startsWith("right-")).length).toBe(N);
      expect([...ids().keys()].filter((k) => k.startsWith("wrong-"))).toEqual([]);
      expect(await failed()).toBeGreaterThan(0);
      for (const r of sink.jsonLines().filter((x: Obj) => String(x.rid).startsWith("right-"))) {
        expect((r.dnsgeo as Obj | undefined)?.status, String(r.rid)).toMatch(/^(enriched|partial)$/);
      }
    } finally {
      await wrong.close();
    }
  }, 90_000);
});
