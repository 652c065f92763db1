/** Forward settings that can never work are refused at start, naming the key. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { canCompressZstd } from "../../../src/pipeline/decode.js";
import { Forwarder } from "../../../src/transport/forwarder.js";

describe("Forwarder settings", () => {
  it.runIf(!canCompressZstd)("refuses zstd compression on a Node.js that cannot compress zstd", () => {
    const cfg = loadConfig({ overrides: { forward: { url: "http://127.0.0.1:9/in", compression: "zstd" } } });
    expect(() => new Forwarder(cfg.forward, { logger: silentLogger() })).toThrow(ConfigError);
    expect(() => new Forwarder(cfg.forward, { logger: silentLogger() })).toThrow(/forward\.compression.*DNSGEO_FORWARD_COMPRESSION/);
  });

  it("accepts the compressions this Node.js can produce", async () => {
    for (const compression of ["none", "gzip", "deflate", "snappy"] as const) {
      const cfg = loadConfig({ overrides: { forward: { url: "http://127.0.0.1:9/in", compression } } });
      const f = new Forwarder(cfg.forward, { logger: silentLogger() });
      await f.close();
    }
  });
});
