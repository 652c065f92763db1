import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AsnTable, parseIpv4, parseIpv6 } from "../../../src/lookup/asn-table.js";

const asnDir = dirname(createRequire(import.meta.url).resolve("@ip-location-db/asn/package.json"));

describe("AsnTable on the bundled data", () => {
  let table: AsnTable;
  beforeAll(() => {
    table = AsnTable.load(join(asnDir, "asn-ipv4-num.csv"), join(asnDir, "asn-ipv6.csv"));
  });

  it.each([
    ["8.8.8.8", 15169, "Google LLC"],
    ["1.1.1.1", 13335, "Cloudflare, Inc."],
    ["2606:4700:4700::1111", 13335, "Cloudflare, Inc."],
    ["2a00:1450:4001:82a::200e", 15169, "Google LLC"],
  ])("maps %s to AS%i", (ip, asn, org) => {
    const got = table.lookup(ip);

    expect(got).toEqual({ asn, org });
  });

  it("answers at both ends of an IPv4 range (8.8.8.0/24) and not with it just outside", () => {
    const got = ["8.8.8.0", "8.8.8.255", "8.8.7.255", "8.8.9.0"].map((ip) => table.lookup(ip)?.asn);

    expect(got.slice(0, 2)).toEqual([15169, 15169]);
    expect(got[2]).not.toBe(15169);
    expect(got[3]).not.toBe(15169);
  });

  it("answers at both ends of an IPv6 range (2606:4700:4700::/48) and misses just outside it", () => {
    const got = [
      "2606:4700:4700::",
      "2606:4700:4700:ffff:ffff:ffff:ffff:ffff",
      "2606:4700:46ff:ffff:ffff:ffff:ffff:ffff",
      "2606:4700:4701::",
    ].map((ip) => table.lookup(ip)?.asn);

    expect(got).toEqual([13335, 13335, undefined, undefined]);
  });

  it("looks an IPv4-mapped IPv6 address up as IPv4", () => {
    expect(table.lookup("::ffff:8.8.8.8")?.asn).toBe(15169);
  });

  it("has no answer for addresses in no range or text that is not an IP", () => {
    const got = ["10.0.0.1", "192.168.1.1", "fc00::1", "::1", "not-an-ip", "", "8.8.8", "fe80::1%eth0"].map((ip) =>
      table.lookup(ip),
    );

    expect(got.every((x) => x === undefined)).toBe(true);
  });
});

describe("AsnTable CSV reading", () => {
  let dir: string;
  let table: AsnTable;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "dnsgeo-asn-"));
    const v4 = [
      `16777216,16777471,13335,"Cloudflare, Inc."`,
      `16777472,16777727,201907,"LLC ""SPUTNIK"""`,
      `16777728,16777983,65001,"Line one`,
      `line two"`,
      `16777984,16778239,65002,Plain Org\r`,
      `16778240,16778495,65003,`,
      `16778496,16778751,65004,"Ünïcødé, GmbH"`,
      // Overlapping rows as found in the published data: the later row wins where they meet.
      `33554432,33555455,65005,Outer`,
      `33555200,33555711,65006,Inner`,
      "",
    ].join("\n");
    const v6 = [
      `2001:db8::,2001:db8:0:0:ffff:ffff:ffff:ffff,64500,"Doc, v6"`,
      `2001:db8:0:1::,2001:db8:0:1:0:1:0:0,64501,Edge`,
      "",
    ].join("\n");
    writeFileSync(join(dir, "v4.csv"), v4);
    writeFileSync(join(dir, "v6.csv"), v6);
    table = AsnTable.load(join(dir, "v4.csv"), join(dir, "v6.csv"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads quoted organisations with commas, doubled quotes, line breaks and non-ASCII text", () => {
    const orgs = ["1.0.0.1", "1.0.1.1", "1.0.2.1", "1.0.5.1"].map((ip) => table.lookup(ip)?.org);

    expect(orgs).toEqual(["Cloudflare, Inc.", 'LLC "SPUTNIK"', "Line one\nline two", "Ünïcødé, GmbH"]);
  });

  it("drops a trailing CR and leaves an empty organisation absent", () => {
    expect(table.lookup("1.0.3.1")).toEqual({ asn: 65002, org: "Plain Org" });
    expect(table.lookup("1.0.4.0")).toEqual({ asn: 65003 });
  });

  it("lets the later row win where two rows overlap", () => {
    const got = ["2.0.0.0", "2.0.2.255", "2.0.3.0", "2.0.4.255", "2.0.5.0"].map((ip) => table.lookup(ip)?.asn);

    expect(got).toEqual([65005, 65005, 65006, 65006, undefined]);
  });

  it("compares all 128 bits of IPv6 bounds", () => {
    const got = [
      "2001:db8::",
      "2001:db8::ffff:ffff:ffff:ffff",
      "2001:db8:0:1::",
      "2001:db8:0:1:0:1:0:0",
      "2001:db8:0:1:0:1:0:1",
      "2001:db8:0:0:ffff:ffff:ffff:fffe",
    ].map((ip) => table.lookup(ip)?.asn);

    expect(got).toEqual([64500, 64500, 64501, 64501, undefined, 64500]);
    expect(table.lookup("2001:db8::1")?.org).toBe("Doc, v6");
  });

  it("reports the file of a malformed row", () => {
    const bad = join(dir, "bad.csv");
    writeFileSync(bad, "1,2,3,ok\nx,2,3,bad\n");

    expect(() => AsnTable.load(bad, join(dir, "v6.csv"))).toThrow(/bad\.csv/);
  });
});

describe("IP text parsing", () => {
  it("parses dotted quads and rejects what is not one", () => {
    expect(parseIpv4("8.8.8.8")).toBe(0x08080808);
    expect(parseIpv4("255.255.255.255")).toBe(0xffffffff);
    expect(["256.1.1.1", "1.2.3", "1.2.3.4.5", "1..2.3", "a.b.c.d", ""].map(parseIpv4)).toEqual([-1, -1, -1, -1, -1, -1]);
  });

  it("parses IPv6 forms into four words and rejects malformed text", () => {
    const w = new Uint32Array(4);
    const words = (s: string): number[] | undefined => (parseIpv6(s, w) ? [...w] : undefined);

    expect(words("::")).toEqual([0, 0, 0, 0]);
    expect(words("::1")).toEqual([0, 0, 0, 1]);
    expect(words("2001:db8::")).toEqual([0x20010db8, 0, 0, 0]);
    expect(words("2001:DB8:0:0:0:0:0:1")).toEqual([0x20010db8, 0, 0, 1]);
    expect(words("::ffff:1.2.3.4")).toEqual([0, 0, 0xffff, 0x01020304]);
    expect(["1::2::3", ":1", "1:", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "fe80::1%eth0", "g::"].map(words)).toEqual(
      Array(8).fill(undefined),
    );
  });
});
