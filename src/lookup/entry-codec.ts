/**
 * The stored item shared by the persistent tiers:
 * `{ip, v, geo, src, fetched_at, expires_at, neg}` (docs/architecture.md, "The lookup contract"),
 * as an object (DynamoDB, Redis as JSON) and as a SQLite row, and the TTL rule every
 * persistent tier applies when serving it.
 */
import type { Entry, GeoInfo } from "./lookup.js";

/** Version of the stored item layout (`v`). Items of another version are treated as misses. */
export const ITEM_VERSION = 1;

/** One cached answer as persisted. Numbers are epoch seconds. */
export interface StoredItem {
  ip: string;
  v: number;
  geo?: GeoInfo;
  src: string;
  fetched_at: number;
  expires_at: number;
  neg?: boolean;
}

/** A copy of `geo` without undefined values (DynamoDB rejects them; JSON drops them anyway). */
function cleanGeo(geo: GeoInfo): GeoInfo {
  const out = {} as Record<string, unknown>;
  for (const k in geo) {
    const v = (geo as unknown as Record<string, unknown>)[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  return out as unknown as GeoInfo;
}

/** Entry → stored item. The `stale` mark is not stored: it is computed when served. */
export function toItem(e: Entry): StoredItem {
  const item: StoredItem = { ip: e.ip, v: ITEM_VERSION, src: e.src, fetched_at: e.fetchedAt, expires_at: e.expiresAt };
  if (e.geo) item.geo = cleanGeo(e.geo);
  if (e.neg) item.neg = true;
  return item;
}

/** Stored item → entry, or undefined when the item is of another version or malformed. */
export function fromItem(item: Record<string, unknown>): Entry | undefined {
  if (item.v !== ITEM_VERSION) return undefined;
  const { ip, src, fetched_at: fetchedAt, expires_at: expiresAt, geo, neg } = item;
  if (typeof ip !== "string" || typeof src !== "string" || typeof fetchedAt !== "number" || typeof expiresAt !== "number") {
    return undefined;
  }
  const e: Entry = { ip, src, fetchedAt, expiresAt };
  if (neg === true || neg === 1) e.neg = true;
  if (geo && typeof geo === "object") e.geo = geo as GeoInfo;
  else if (!e.neg) return undefined;
  return e;
}

/** The SQLite tier's columns: the item's fields, then the tier's own LRU stamp. Statements list them in this order. */
export const SQLITE_COLUMNS = ["ip", "v", "geo", "src", "fetched_at", "expires_at", "neg", "last_used"] as const;

/** A row in `SQLITE_COLUMNS` order (better-sqlite3's raw mode: no object per row on the read path). */
export type SqliteRow = [ip: string, v: number, geo: string | null, src: string, fetched_at: number, expires_at: number, neg: number, last_used: number];

/** Entry → the values of `SQLITE_COLUMNS` (geo as JSON text, neg as 0/1). */
export function toSqliteRow(e: Entry, lastUsed: number): SqliteRow {
  const item = toItem(e);
  return [item.ip, item.v, item.geo ? JSON.stringify(item.geo) : null, item.src, item.fetched_at, item.expires_at, item.neg ? 1 : 0, lastUsed];
}

/** A row read in `SQLITE_COLUMNS` order → entry, or undefined when it is of another version or its geo is not JSON. */
export function fromSqliteRow(r: SqliteRow): Entry | undefined {
  const [ip, v, geo, src, fetchedAt, expiresAt, neg] = r;
  if (v !== ITEM_VERSION) return undefined;
  const e: Entry = { ip, src, fetchedAt, expiresAt };
  if (neg) e.neg = true;
  if (geo !== null) {
    try {
      e.geo = JSON.parse(geo) as GeoInfo;
    } catch {
      return undefined;
    }
  }
  return e;
}

/**
 * The TTL rule: a fresh entry is served as is; an expired one only when
 * `allowStale` and younger than `expiresAt + staleMaxS`, marked `stale: true`.
 * Returns undefined when the entry must not be served.
 */
export function serveable(e: Entry, now: number, allowStale: boolean | undefined, staleMaxS: number): Entry | undefined {
  if (e.expiresAt > now) return e;
  if (allowStale && e.expiresAt + staleMaxS > now) return Object.assign({}, e, { stale: true });
  return undefined;
}
