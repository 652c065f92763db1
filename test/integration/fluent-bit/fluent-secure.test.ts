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
import { fluentBitYaml, tailSource, type Section } from "../../helpers/fluent-bit-chain.js";
import { startHarness, type Harness } from "../transport/harness.js";

type Obj = Record<string, unknown>;
const N = 50;
const skip = FLUENT_BIT_SKIP !== "" || !hasOpenssl();
const why = FLUENT_BIT_SKIP ? ` (skipped: ${FLUENT_BIT_SKIP})` : !hasOpenssl() ? " (skipped: no openssl CLI to make test certificates)" : "";

/** `N` Route 53 lines with ids `<prefix>-<i>`, one public answer each. */
function lines(prefix: string): string {
  return Array.from({ length: N }, (_, i) => route53Record(`${prefix}-${i}`, [publicIp(i * 31 + 7)])).join("\n") + "\n";
}

/** tail of `file` ─ out_forward (require_ack_response; `more` adds to it) to 127.0.0.1:`port`. */
function sourceConfig(file: string, port: number, more: Section = {}): string {
  return tailSource({ service: { flush: 0.5, log_level: "info" }, path: file, output: { name: "forward", match: "*", host: "127.0.0.1", port, require_ack_response: true, ...more } });
}

/** What out_forward adds to send with shared key `key` over TLS, verifying the server against `caFile`. */
function secure(key: string, caFile: string): Section {
  return { shared_key: key, self_hostname: "fluent-bit-test", tls: "on", "tls.verify": "on", "tls.ca_file": caFile };
}

/** in_forward on `port` (`more` adds to it) ─ stdout as JSON lines. */
function sinkConfig(port: number, more: Section = {}): string {
  return fluentBitYaml({ service: { flush: 0.5 }, inputs: [{ name: "forward", listen: "127.0.0.1", port, ...more }], outputs: [{ name: "stdout", match: "*", format: "json_lines" }] });
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
      config: sinkConfig(sinkPort),
      readyPorts: [sinkPort],
    });
    fbs.push(sink);
    h = await startHarness({
      fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, shared_key: "right-key", tls: { cert_file: certs.serverCertFile, key_file: certs.serverKeyFile } },
    });
    const port = Number((h.serve.fluentAddress ?? "").split(":").pop());
    const goodFile = join(certs.dir, "good.ndjson");
    const badFile = join(certs.dir, "bad.ndjson");
    writeFileSync(goodFile, lines("good"));
    writeFileSync(badFile, lines("bad"));
    // Act
    const good = await startFluentBit({ format: "yaml", config: sourceConfig(goodFile, port, secure("right-key", certs.caFile)) });
    fbs.push(good);
    const bad = await startFluentBit({ format: "yaml", config: sourceConfig(badFile, port, secure("wrong-key", certs.caFile)) });
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
      config: sinkConfig(sinkPort, { shared_key: "hop-key", self_hostname: "sink", tls: "on", "tls.verify": "off", "tls.crt_file": certs.serverCertFile, "tls.key_file": certs.serverKeyFile }),
      readyPorts: [sinkPort],
    });
    fbs.push(sink);
    const hopTls = { enabled: true, ca_file: certs.caFile };
    h = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, next_hop_shared_key: "hop-key", next_hop_tls: hopTls, timeout_ms: 3000 } });
    const wrong = await startHarness({ fluent: { listen: "127.0.0.1:0", next_hop: `127.0.0.1:${sinkPort}`, next_hop_shared_key: "not-the-key", next_hop_tls: hopTls, timeout_ms: 3000 } });
    const portOf = (x: Harness): number => Number((x.serve.fluentAddress ?? "").split(":").pop());
    const rightFile = join(certs.dir, "right.ndjson");
    const wrongFile = join(certs.dir, "wrong.ndjson");
    writeFileSync(rightFile, lines("right"));
    writeFileSync(wrongFile, lines("wrong"));
    try {
      // Act
      fbs.push(await startFluentBit({ format: "yaml", config: sourceConfig(rightFile, portOf(h)) }));
      fbs.push(await startFluentBit({ format: "yaml", config: sourceConfig(wrongFile, portOf(wrong)) }));
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
