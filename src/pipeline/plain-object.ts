/**
 * Helpers for the plain JSON objects the formatters copy and add to.
 * JSON.parse creates an own `__proto__` key as ordinary data; Object.assign and
 * plain writes would call the prototype setter instead, dropping the key and
 * changing the copy's prototype. These keep such a key as data.
 */

/** A JSON-like object: not null, not an array, prototype Object.prototype or null. */
export function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Writes `key` as an own data property, also when it is `__proto__`. */
export function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
  else o[key] = value;
}

/** Shallow copy into `target` (default a new object) that keeps an own `__proto__` key as data. */
export function copyOf(src: Record<string, unknown>, target: Record<string, unknown> = {}): Record<string, unknown> {
  if (!Object.prototype.hasOwnProperty.call(src, "__proto__")) return Object.assign(target, src);
  for (const k of Object.keys(src)) setOwn(target, k, src[k]);
  return target;
}
