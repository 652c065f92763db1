import { describe, expect, it } from "vitest";
import { IPAPI_FREE_URL, IPAPI_PRO_URL, IpApiProvider, ProviderError, geoFromIpApi, ipApiOptionsFromConfig } from "../../../src/lookup/ipapi-provider.js";
import { loadConfig } from "../../../src/config.js";

describe("geoFromIpApi", () => {
  it("maps every ip-api field to GeoInfo and splits `as` into asn and asOrg", () => {
    // Prepare
    const answer = {
      status: "success", continentCode: "NA", country: "United States", countryCode: "US", region: "VA",
      regionName: "Virginia", city: "Ashburn", zip: "20149", lat: 39.03, lon: -77.5, timezone: "America/New_York",
      isp: "Google LLC", org: "Google Public DNS", as: "AS15169 Google LLC", query: "8.8.8.8",
    };
    // Act
    const g = geoFromIpApi("8.8.8.8", answer, 1700000000);
    // Assess
    expect(g).toEqual({
      ip: "8.8.8.8", countryCode: "US", country: "United States", regionCode: "VA", regionName: "Virginia", city: "Ashburn",
      postalCode: "20149", lat: 39.03, lon: -77.5, timezone: "America/New_York", continentCode: "NA", asn: 15169,
      asOrg: "Google LLC", org: "Google Public DNS", isp: "Google LLC", source: "ip-api", fetchedAt: 1700000000,
    });
  });

  it("drops empty strings and keeps an `as` without a number as asOrg only", () => {
    // Act
    const g = geoFromIpApi("1.2.3.4", { status: "success", country: "", city: "", zip: "", org: "", as: "", isp: "X" }, 1);
    const bare = geoFromIpApi("1.2.3.4", { as: "AS64500" }, 1);
    const odd = geoFromIpApi("1.2.3.4", { as: "Private network" }, 1);
    // Assess
    expect(g).toEqual({ ip: "1.2.3.4", isp: "X", source: "ip-api", fetchedAt: 1 });
    expect(bare).toEqual({ ip: "1.2.3.4", asn: 64500, source: "ip-api", fetchedAt: 1 });
    expect(odd.asn).toBeUndefined();
    expect(odd.asOrg).toBe("Private network");
  });
});

describe("IpApiProvider endpoints", () => {
  it("uses the free HTTP endpoint without a key, the pro HTTPS endpoint with one, and ipapi.url over both", async () => {
    // Prepare
    const base = { fields: "status", lang: "en", batchSize: 100, timeoutMs: 1000, ttlS: 10, negativeTtlS: 5 };
    // Act
    const free = new IpApiProvider(base);
    const pro = new IpApiProvider(Object.assign({ key: "secret" }, base));
    const custom = new IpApiProvider(Object.assign({ key: "secret", url: "http://127.0.0.1:9/" }, base));
    // Assess
    expect(free.baseUrl).toBe(IPAPI_FREE_URL);
    expect(pro.baseUrl).toBe(IPAPI_PRO_URL);
    expect(custom.baseUrl).toBe("http://127.0.0.1:9");
    expect(pro.baseUrl).not.toContain("secret");
    await Promise.all([free.close(), pro.close(), custom.close()]);
  });

  it("takes its options from config, including DNSGEO_IPAPI_URL", () => {
    // Act
    const o = ipApiOptionsFromConfig(loadConfig({ env: { DNSGEO_IPAPI_URL: "http://127.0.0.1:1234" } }));
    // Assess
    expect(o).toMatchObject({ url: "http://127.0.0.1:1234", lang: "en", batchSize: 100, ttlS: 14 * 86400, negativeTtlS: 86400 });
    expect(o.fields).toContain("as");
  });

  it("refuses a batch larger than batch_size before sending", async () => {
    // Prepare
    const p = new IpApiProvider({ url: "http://127.0.0.1:9", fields: "status", lang: "en", batchSize: 2, timeoutMs: 1000, ttlS: 10, negativeTtlS: 5 });
    // Act / Assess
    await expect(p.fetchBatch(["1.1.1.1", "1.0.0.1", "8.8.8.8"])).rejects.toBeInstanceOf(RangeError);
    await p.close();
  });

  it("gives provider errors stable codes", () => {
    // Act
    const e = new ProviderError("connect", "x");
    // Assess
    expect(e.code).toBe("DNSGEO_PROVIDER_CONNECT");
  });
});
