import { join } from "node:path";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MmdbProvider } from "../../../src/lookup/mmdb-provider.js";
import type { Clock, GeoInfo } from "../../../src/lookup/lookup.js";

const NOW_S = 1_700_000_000;
const clock: Clock = { now: () => NOW_S * 1000 };
const TTL_S = 86_400;

function emptyStrings(geo: GeoInfo): string[] {
  return Object.entries(geo)
    .filter(([, v]) => v === "" || v === null || v === undefined)
    .map(([k]) => k);
}

describe("MmdbProvider", () => {
  let mmdb: MmdbProvider;
  beforeAll(async () => {
    mmdb = await MmdbProvider.open({ ttlS: TTL_S, clock });
  });
  afterAll(() => mmdb.close());

  it("answers 8.8.8.8 with US, coordinates and AS15169 as an mmdb entry", () => {
    const got = mmdb.get(["8.8.8.8"]);

    const e = got.get("8.8.8.8");
    expect(e).toMatchObject({ ip: "8.8.8.8", src: "mmdb", fetchedAt: NOW_S, expiresAt: NOW_S + TTL_S });
    expect(e?.neg).toBeUndefined();
    const geo = e?.geo;
    expect(geo).toMatchObject({
      ip: "8.8.8.8",
      countryCode: "US",
      country: "United States",
      asn: 15169,
      asOrg: "Google LLC",
      source: "mmdb",
      fetchedAt: NOW_S,
    });
    expect(typeof geo?.lat).toBe("number");
    expect(typeof geo?.lon).toBe("number");
    expect(geo?.lat).toBeGreaterThan(24);
    expect(geo?.lat).toBeLessThan(50);
    expect(geo?.isp).toBeUndefined();
    expect(geo?.org).toBeUndefined();
  });

  it("routes IPv6 to the IPv6 file (the IPv4 file would answer garbage for it)", () => {
    const geo = mmdb.get(["2606:4700:4700::1111"]).get("2606:4700:4700::1111")?.geo;

    expect(geo?.asn).toBe(13335);
    expect(geo?.countryCode).toMatch(/^[A-Z]{2}$/);
    expect(geo?.city).not.toBe("Los Angeles (Downtown Los Angeles)");
  });

  it("answers an IPv4-mapped IPv6 address like its IPv4 address, keyed by the text asked", () => {
    const got = mmdb.get(["::ffff:8.8.8.8", "8.8.8.8"]);

    const mapped = got.get("::ffff:8.8.8.8")?.geo;
    const plain = got.get("8.8.8.8")?.geo;
    expect(mapped?.ip).toBe("::ffff:8.8.8.8");
    expect(Object.assign({}, mapped, { ip: "8.8.8.8" })).toEqual(plain);
  });

  it("misses private, loopback and non-IP text: no entry at all", () => {
    const ips = ["10.0.0.1", "192.168.1.1", "127.0.0.1", "fc00::1", "::1", "not-an-ip", "fe80::1%eth0"];

    const got = mmdb.get(ips);

    expect(got.size).toBe(0);
  });

  it("never puts empty strings in GeoInfo: unknown fields are absent", () => {
    const ips = ["8.8.8.8", "1.1.1.1", "81.2.69.142", "2a00:1450:4001:82a::200e", "2606:4700:4700::1111", "9.9.9.9"];

    const got = mmdb.get(ips);

    expect(got.size).toBe(ips.length);
    for (const e of got.values()) {
      const geo = e.geo!;
      expect(emptyStrings(geo)).toEqual([]);
      // The DB-IP lite files carry no region code; the key must not exist at all.
      expect("regionCode" in geo).toBe(false);
    }
  });

  it("answers a batch of 0 and does nothing on set()", () => {
    const none = mmdb.get([]);
    mmdb.set([{ ip: "8.8.8.8", src: "ip-api", fetchedAt: 0, expiresAt: 1 }]);

    expect(none.size).toBe(0);
    expect(mmdb.get(["8.8.8.8"]).get("8.8.8.8")?.src).toBe("mmdb");
  });

  it("shares loaded data between providers opened with the same files", async () => {
    const second = await MmdbProvider.open({ ttlS: 60, clock });

    const e = second.get(["1.1.1.1"]).get("1.1.1.1");
    second.close();
    second.close();

    expect(e?.expiresAt).toBe(NOW_S + 60);
    expect(e?.geo?.asn).toBe(13335);
    expect(mmdb.get(["1.1.1.1"]).size).toBe(1);
  });

  it("names the file and the config key when a file is missing", async () => {
    const missing = join(tmpdir(), "dnsgeo-no-such-file.mmdb");

    await expect(MmdbProvider.open({ ttlS: 60, cityV6Path: missing })).rejects.toThrow(
      /dnsgeo-no-such-file\.mmdb.*mmdb\.city_v6_path/,
    );
  });

  it("answers nothing after close(), which is idempotent", async () => {
    const p = await MmdbProvider.open({ ttlS: 60, clock });

    p.close();
    p.close();

    expect(p.get(["8.8.8.8"]).size).toBe(0);
  });
});
