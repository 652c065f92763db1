import { describe, expect, it } from "vitest";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { classifyIp } from "../../../src/pipeline/classify.js";
import type { SkipReason } from "../../../src/pipeline/types.js";

describe("classifyIp: not IPs", () => {
  it.each([
    "www.example.com.",
    "edge.microsoft.com",
    "v=spf1 include:_spf.example.com ~all",
    "",
    "cafe.babe",
    "1.2.3.4.5",
    "12345",
    "[2001:db8::1]",
    "dead:beef",
  ])("drops %j", (text) => {
    // Act
    const got = classifyIp(text);
    // Assess
    expect(got).toBeUndefined();
  });
});

describe("classifyIp: public addresses", () => {
  it.each([
    ["8.8.8.8", "8.8.8.8"],
    ["1.1.1.1", "1.1.1.1"],
    ["2606:4700:4700::1111", "2606:4700:4700::1111"],
    ["2606:4700:4700:0:0:0:0:1111", "2606:4700:4700::1111"],
    ["2A00:1450:4001:0829:0000:0000:0000:200E", "2a00:1450:4001:829::200e"],
    ["2001:4860:4860:0:0:0:0:8888", "2001:4860:4860::8888"],
    ["2001:4860:0:1:0:0:1:1", "2001:4860:0:1::1:1"],
    ["::ffff:8.8.8.8", "8.8.8.8"],
    ["::FFFF:0808:0808", "8.8.8.8"],
    ["0:0:0:0:0:ffff:8.8.4.4", "8.8.4.4"],
    ["64:ff9b::8.8.8.8", "8.8.8.8"],
    ["64:ff9b::0808:0808", "8.8.8.8"],
  ])("%s → %s", (text, canonical) => {
    // Act
    const got = classifyIp(text);
    // Assess
    expect(got).toEqual({ ip: canonical, class: "public" });
  });

  it("keeps 255.255.255.254 out of broadcast but in reserved 240/4", () => {
    expect(classifyIp("255.255.255.254")).toEqual({ ip: "255.255.255.254", class: "skipped", reason: "reserved" });
  });
});

describe("classifyIp: globally reachable IANA special-purpose anycast", () => {
  it.each([
    ["192.31.196.1", "192.31.196.1"],
    ["192.31.196.255", "192.31.196.255"],
    ["192.52.193.1", "192.52.193.1"],
    ["192.175.48.6", "192.175.48.6"],
    ["192.175.48.42", "192.175.48.42"],
    ["2620:4f:8000::6", "2620:4f:8000::6"],
    ["2620:004F:8000:ffff::1", "2620:4f:8000:ffff::1"],
    ["2001:3::1", "2001:3::1"],
    ["::ffff:192.175.48.1", "192.175.48.1"],
  ])("%s is skipped as special_purpose", (text, canonical) => {
    expect(classifyIp(text)).toEqual({ ip: canonical, class: "skipped", reason: "special_purpose" });
  });

  it.each(["192.31.195.255", "192.31.197.0", "192.52.192.255", "192.175.47.255", "192.175.49.0", "2620:4f:7fff::1", "2620:4f:8001::1"])(
    "%s next to them stays public",
    (text) => {
      expect(classifyIp(text)?.class).toBe("public");
    },
  );
});

describe("classifyIp: special-purpose ranges", () => {
  const cases: Array<[string, string, SkipReason]> = [
    ["0.0.0.0", "0.0.0.0", "unspecified"],
    ["0.1.2.3", "0.1.2.3", "unspecified"],
    ["10.0.0.1", "10.0.0.1", "private"],
    ["10.255.255.255", "10.255.255.255", "private"],
    ["172.16.0.1", "172.16.0.1", "private"],
    ["172.31.255.255", "172.31.255.255", "private"],
    ["192.168.1.1", "192.168.1.1", "private"],
    ["100.64.0.1", "100.64.0.1", "cgnat"],
    ["100.127.255.255", "100.127.255.255", "cgnat"],
    ["127.0.0.1", "127.0.0.1", "loopback"],
    ["127.255.0.9", "127.255.0.9", "loopback"],
    ["169.254.169.254", "169.254.169.254", "link_local"],
    ["192.0.0.9", "192.0.0.9", "special_purpose"],
    ["192.0.2.1", "192.0.2.1", "documentation"],
    ["198.51.100.7", "198.51.100.7", "documentation"],
    ["203.0.113.200", "203.0.113.200", "documentation"],
    ["198.18.0.1", "198.18.0.1", "benchmarking"],
    ["198.19.255.255", "198.19.255.255", "benchmarking"],
    ["192.88.99.1", "192.88.99.1", "6to4_relay"],
    ["224.0.0.251", "224.0.0.251", "multicast"],
    ["239.255.255.250", "239.255.255.250", "multicast"],
    ["240.0.0.1", "240.0.0.1", "reserved"],
    ["255.255.255.255", "255.255.255.255", "broadcast"],
    ["::", "::", "unspecified"],
    ["::1", "::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "::1", "loopback"],
    ["::ffff:127.0.0.1", "127.0.0.1", "loopback"],
    ["::ffff:10.1.2.3", "10.1.2.3", "private"],
    ["::ffff:0a00:0001", "10.0.0.1", "private"],
    ["64:ff9b::192.168.0.1", "192.168.0.1", "private"],
    ["64:ff9b:1::1", "64:ff9b:1::1", "special_purpose"],
    ["100::1", "100::1", "special_purpose"],
    ["2001::1", "2001::1", "teredo"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"],
    ["2001:2::1", "2001:2::1", "benchmarking"],
    ["2001:1::1", "2001:1::1", "special_purpose"],
    ["2001:1ff:ffff::1", "2001:1ff:ffff::1", "special_purpose"],
    ["2001:DB8::1", "2001:db8::1", "documentation"],
    ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"],
    ["2002:c000:204::1", "2002:c000:204::1", "special_purpose"],
    ["3fff::1", "3fff::1", "documentation"],
    ["3fff:fff::1", "3fff:fff::1", "documentation"],
    ["5f00::1", "5f00::1", "special_purpose"],
    ["fc00::1", "fc00::1", "unique_local"],
    ["fd12:3456:789a::1", "fd12:3456:789a::1", "unique_local"],
    ["fe80::1", "fe80::1", "link_local"],
    ["febf::1", "febf::1", "link_local"],
    ["fec0::1", "fec0::1", "reserved"],
    ["ff02::fb", "ff02::fb", "multicast"],
    ["::1.2.3.4", "::102:304", "reserved"],
    ["4000::1", "4000::1", "reserved"],
    ["1000::1", "1000::1", "reserved"],
  ];
  it.each(cases)("%s → %s (%s)", (text, canonical, reason) => {
    // Act
    const got = classifyIp(text);
    // Assess
    expect(got).toEqual({ ip: canonical, class: "skipped", reason });
  });

  it("treats the edges just outside ranges as public", () => {
    // Prepare
    const outside = ["9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "100.63.255.255", "100.128.0.0", "198.17.255.255", "198.20.0.0", "223.255.255.255", "2001:200::1", "3fff:1000::1", "2003::1"];
    // Act
    const got = outside.map((t) => classifyIp(t)?.class);
    // Assess
    expect(got).toEqual(outside.map(() => "public"));
  });
});

describe("classifyIp: odd forms", () => {
  it.each([
    "127.1",
    "0x7f.1",
    "0x7f.0.0.1",
    "0X7F.0.0.1",
    "010.0.0.1",
    "1.2.3.04",
    "8.8.8.8.",
    "1.2.3.256",
    "1.2.3",
    " 8.8.8.8",
    "8.8.8.8 ",
    "::ffff:127.1",
    "::ffff:010.0.0.1",
    "1::2::3",
    "12345::1",
    " 2001:db8::1",
  ])("%j is skipped as not_canonical with its raw text", (text) => {
    // Act
    const got = classifyIp(text);
    // Assess
    expect(got).toEqual({ ip: text, class: "skipped", reason: "not_canonical" });
  });

  it.each(["fe80::1%eth0", "fe80::1%1", "2606:4700::1111%en0"])("%j is skipped as zone_id", (text) => {
    expect(classifyIp(text)).toEqual({ ip: text, class: "skipped", reason: "zone_id" });
  });

  it("never throws on non-string input", () => {
    expect(classifyIp(42 as unknown as string)).toBeUndefined();
  });
});

const v6Groups = (big: bigint): number[] => {
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((big >> BigInt(i * 16)) & 0xffffn));
  return out;
};

/** Random addresses inside a CIDR, as a bigint (v6) or number (v4). */
function v4In(cidr: string): fc.Arbitrary<string> {
  const [base, bits] = ipaddr.IPv4.parseCIDR(cidr);
  const n = base.octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - bits);
  return fc.integer({ min: 0, max: size - 1 }).map((off) => {
    const v = n + off;
    return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
  });
}

function v6In(cidr: string): fc.Arbitrary<number[]> {
  const [base, bits] = ipaddr.IPv6.parseCIDR(cidr);
  const n = base.parts.reduce((acc, p) => (acc << 16n) | BigInt(p), 0n);
  const hostBits = 128 - bits;
  return fc.bigInt({ min: 0n, max: (1n << BigInt(hostBits)) - 1n }).map((off) => v6Groups(n + off));
}

/** Several RFC 4291 spellings of the same groups. */
function v6Texts(groups: number[]): fc.Arbitrary<string> {
  const full = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
  const short = groups.map((g) => g.toString(16)).join(":");
  const forms = [full, full.toUpperCase(), short, new ipaddr.IPv6(groups).toRFC5952String(), new ipaddr.IPv6(groups).toNormalizedString()];
  return fc.constantFrom(...forms);
}

const V4_SPECIAL = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"];
const V6_SPECIAL = ["::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8", "4000::/2", "8000::/1", "::/3"];

describe("classifyIp: properties", () => {
  it("never throws on arbitrary strings and returns a well-formed answer or nothing", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEFx.:% ".split("")) })), (s) => {
        const got = classifyIp(s);
        if (got === undefined) return;
        expect(["public", "skipped"]).toContain(got.class);
        if (got.class === "public") expect(got.reason).toBeUndefined();
      }),
      { numRuns: 5000 },
    );
  });

  it("never calls an address inside an IPv4 special range public, in any textual form", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...V4_SPECIAL).chain((c) => v4In(c)),
        fc.constantFrom("plain", "mapped", "mapped-hex", "nat64", "upper-mapped"),
        (addr, form) => {
          const o = addr.split(".").map(Number) as [number, number, number, number];
          const hi = ((o[0] << 8) | o[1]).toString(16);
          const lo = ((o[2] << 8) | o[3]).toString(16);
          const text = { plain: addr, mapped: `::ffff:${addr}`, "mapped-hex": `::ffff:${hi}:${lo}`, nat64: `64:ff9b::${addr}`, "upper-mapped": `0:0:0:0:0:FFFF:${addr}` }[form];
          const got = classifyIp(text);
          expect(got?.class).toBe("skipped");
          expect(got?.ip).toBe(addr);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("never calls an address inside an IPv6 special range public, in any textual form", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...V6_SPECIAL).chain((c) => v6In(c)),
        (groups) => {
          // ::ffff:0:0/96 and 64:ff9b::/96 map to IPv4 and are covered above.
          fc.pre(!(groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff));
          return fc.assert(
            fc.property(v6Texts(groups), (text) => {
              const got = classifyIp(text);
              expect(got?.class).toBe("skipped");
            }),
            { numRuns: 5 },
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("canonical IPv6 text is RFC 5952 and stable under reclassification", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }), (groups) => {
        const text = groups.map((g) => g.toString(16).toUpperCase()).join(":");
        const got = classifyIp(text);
        expect(got).toBeDefined();
        const padded = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
        expect(classifyIp(padded)).toEqual(got);
        expect(classifyIp(new ipaddr.IPv6(groups).toRFC5952String())).toEqual(got);
        const again = classifyIp(got!.ip);
        expect(again).toEqual(got);
        if (got!.ip.includes(":")) expect(got!.ip).toBe(new ipaddr.IPv6(groups).toRFC5952String());
      }),
      { numRuns: 3000 },
    );
  });
});
