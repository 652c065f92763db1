/**
 * The one contract every cache tier (and the chain) passes. Each run gets a
 * fresh tier from the factory, with a manual clock, so TTL tests need no sleeps.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Clock, Entry, GeoInfo, Lookup } from "../../../src/lookup/lookup.js";
import { googleGeo } from "../../helpers/google-entry.js";

/** A clock the test moves by hand (milliseconds). */
export class ManualClock implements Clock {
  constructor(public ms = 1_700_000_000_000) {}
  now(): number {
    return this.ms;
  }
  advanceS(s: number): void {
    this.ms += s * 1000;
  }
}

export interface ContractContext {
  clock: ManualClock;
  /** Seconds past expiry an entry may still be served with allowStale. */
  staleMaxS: number;
}

export interface ContractSubject {
  lookup: Lookup;
  /** Makes queued writes visible (write-behind tiers). */
  flush?(): Promise<void> | void;
  /** Frees what the factory made besides the tier (files, tables). */
  cleanup?(): Promise<void> | void;
}

export type ContractFactory = (ctx: ContractContext) => Promise<ContractSubject> | ContractSubject;

export const STALE_MAX_S = 3600;

/** A full positive entry as the ip-api provider would produce it. */
export function positive(ip: string, clock: Clock, ttlS = 600, extra: Partial<GeoInfo> = {}): Entry {
  const fetchedAt = Math.floor(clock.now() / 1000);
  const geo = googleGeo(ip, { lat: 37.4223, lon: -122.085, fetchedAt, ...extra });
  return { ip, geo, src: "ip-api", fetchedAt, expiresAt: fetchedAt + ttlS };
}

export function negative(ip: string, clock: Clock, ttlS = 300): Entry {
  const fetchedAt = Math.floor(clock.now() / 1000);
  return { ip, neg: true, src: "ip-api", fetchedAt, expiresAt: fetchedAt + ttlS };
}

/** `n` distinct public-looking IPv4 addresses (keys only; nothing is sent anywhere). */
export function ipv4s(n: number, base = 1): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = base * 65536 + i;
    out.push(`${11 + ((v >> 16) % 200)}.${(v >> 8) & 255}.${v & 255}.${(i % 250) + 1}`);
  }
  return out;
}

/** Runs the contract against a tier made by `factory`. */
export function runLookupContract(name: string, factory: ContractFactory): void {
  describe(`Lookup contract: ${name}`, () => {
    let subject: ContractSubject | undefined;
    let clock: ManualClock;

    async function make(): Promise<ContractSubject> {
      clock = new ManualClock();
      subject = await factory({ clock, staleMaxS: STALE_MAX_S });
      return subject;
    }
    async function setAndFlush(s: ContractSubject, entries: Entry[]): Promise<void> {
      await s.lookup.set(entries);
      await s.flush?.();
    }

    afterEach(async () => {
      if (subject) {
        await subject.lookup.close();
        await subject.cleanup?.();
        subject = undefined;
      }
    });

    it("has a name", async () => {
      const s = await make();
      expect(typeof s.lookup.name).toBe("string");
      expect(s.lookup.name.length).toBeGreaterThan(0);
    });

    it("answers an empty batch with an empty map", async () => {
      const s = await make();
      const got = await s.lookup.get([]);
      expect(got.size).toBe(0);
    });

    it("round-trips one positive entry and misses an unknown IP", async () => {
      const s = await make();
      const e = positive("8.8.8.8", clock);
      await setAndFlush(s, [e]);
      const got = await s.lookup.get(["8.8.8.8", "9.9.9.9"]);
      expect(got.get("8.8.8.8")).toEqual(e);
      expect(got.get("8.8.8.8")?.stale).toBeUndefined();
      expect(got.has("9.9.9.9")).toBe(false);
      expect(got.size).toBe(1);
    });

    it("round-trips a negative entry", async () => {
      const s = await make();
      const e = negative("203.0.113.9", clock);
      await setAndFlush(s, [e]);
      const got = await s.lookup.get(["203.0.113.9"]);
      expect(got.get("203.0.113.9")).toEqual(e);
      expect(got.get("203.0.113.9")?.geo).toBeUndefined();
    });

    it("keys IPv6 addresses by their canonical text", async () => {
      const s = await make();
      const a = positive("2001:4860:4860::8888", clock);
      const b = positive("2606:4700:4700::1111", clock, 600, { asn: 13335, asOrg: "Cloudflare, Inc." });
      await setAndFlush(s, [a, b]);
      const got = await s.lookup.get(["2001:4860:4860::8888", "2606:4700:4700::1111", "2001:4860:4860::8844"]);
      expect(got.get("2001:4860:4860::8888")).toEqual(a);
      expect(got.get("2606:4700:4700::1111")?.geo?.asn).toBe(13335);
      expect(got.size).toBe(2);
    });

    it("replaces an entry with a newer one for the same IP", async () => {
      const s = await make();
      await setAndFlush(s, [positive("1.1.1.1", clock, 600, { city: "Old" })]);
      clock.advanceS(10);
      const newer = positive("1.1.1.1", clock, 600, { city: "New" });
      await setAndFlush(s, [newer]);
      const got = await s.lookup.get(["1.1.1.1"]);
      expect(got.get("1.1.1.1")).toEqual(newer);
    });

    it.each([1, 100, 1000])("answers a batch of %i keys, half of them known", async (n) => {
      const s = await make();
      const ips = ipv4s(n, n);
      const known = ips.filter((_, i) => i % 2 === 0);
      await setAndFlush(s, known.map((ip) => positive(ip, clock)));
      const got = await s.lookup.get(ips);
      expect(got.size).toBe(known.length);
      for (const ip of known) expect(got.get(ip)?.geo?.ip).toBe(ip);
    });

    it("answers each IP once when a batch repeats it", async () => {
      const s = await make();
      await setAndFlush(s, [positive("8.8.4.4", clock)]);
      const got = await s.lookup.get(["8.8.4.4", "8.8.4.4", "8.8.4.4"]);
      expect([...got.keys()]).toEqual(["8.8.4.4"]);
    });

    it("never serves an expired entry as fresh", async () => {
      const s = await make();
      await setAndFlush(s, [positive("8.8.8.8", clock, 60), negative("203.0.113.7", clock, 60)]);
      clock.advanceS(59);
      expect((await s.lookup.get(["8.8.8.8", "203.0.113.7"])).size).toBe(2);
      clock.advanceS(1);
      const got = await s.lookup.get(["8.8.8.8", "203.0.113.7"]);
      expect(got.size).toBe(0);
    });

    it("serves an expired entry marked stale only with allowStale, within the stale window", async () => {
      const s = await make();
      const e = positive("8.8.8.8", clock, 60);
      await setAndFlush(s, [e]);
      clock.advanceS(60 + STALE_MAX_S - 1);
      const stale = await s.lookup.get(["8.8.8.8"], { allowStale: true });
      expect(stale.get("8.8.8.8")).toEqual(Object.assign({}, e, { stale: true }));
      expect((await s.lookup.get(["8.8.8.8"])).size).toBe(0);
      clock.advanceS(1);
      expect((await s.lookup.get(["8.8.8.8"], { allowStale: true })).size).toBe(0);
    });

    it("serves fresh entries unmarked when allowStale is set", async () => {
      const s = await make();
      const e = positive("9.9.9.9", clock);
      await setAndFlush(s, [e]);
      const got = await s.lookup.get(["9.9.9.9"], { allowStale: true });
      expect(got.get("9.9.9.9")).toEqual(e);
      expect(got.get("9.9.9.9")?.stale).toBeUndefined();
    });

    it("closes idempotently", async () => {
      const s = await make();
      await s.lookup.set([positive("8.8.8.8", clock)]);
      await s.lookup.close();
      await expect(Promise.resolve(s.lookup.close())).resolves.toBeUndefined();
    });
  });
}
