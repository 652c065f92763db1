/**
 * Bearer token check shared by HTTP (`Authorization`) and gRPC (`authorization`
 * metadata). Both sides are hashed first so `timingSafeEqual` always compares
 * equal-length buffers and the token's length does not leak through timing.
 */
import { createHash, timingSafeEqual } from "node:crypto";

/** Returns true when the credential is accepted. */
export type TokenCheck = (authorization: string | undefined) => boolean;

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/**
 * A check for `token`; with no token configured every request passes.
 * Accepts `Bearer <token>` (scheme case-insensitive).
 */
export function createTokenCheck(token: string | undefined): TokenCheck {
  if (token === undefined || token === "") return () => true;
  const want = digest(token);
  return (authorization) => {
    if (authorization === undefined) return false;
    const m = BEARER.exec(authorization);
    // Compare something even when the header is malformed, so both paths cost the same.
    const got = digest(m?.[1] ?? "");
    return timingSafeEqual(want, got) && m !== null;
  };
}

/**
 * The same check for a raw secret (Kinesis Firehose sends its access key in
 * `X-Amz-Firehose-Access-Key` instead of a bearer token).
 */
export function createSecretCheck(token: string | undefined): (secret: string | undefined) => boolean {
  if (token === undefined || token === "") return () => true;
  const want = digest(token);
  return (secret) => timingSafeEqual(want, digest(secret ?? "")) && secret !== undefined;
}
