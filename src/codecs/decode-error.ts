/**
 * The error every body codec throws: unknown coding, corrupt data, or past the size limit.
 */
import { DnsgeoError } from "../errors.js";

/** Stable codes of decode errors (rows of the error table). */
export type DecodeErrorCode =
  | "DNSGEO_UNSUPPORTED_ENCODING"
  | "DNSGEO_BODY_TOO_LARGE"
  | "DNSGEO_BAD_COMPRESSION";

/** A body that cannot be decompressed, or decompresses past the size limit. */
export class DecodeError extends DnsgeoError {
  declare readonly code: DecodeErrorCode;
  constructor(code: DecodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, undefined, { message, cause: options?.cause });
    this.name = "DecodeError";
  }
}

/** The error for a body that decodes past `max` bytes. */
export function tooLarge(max: number): DecodeError {
  return new DecodeError("DNSGEO_BODY_TOO_LARGE", `decoded body is larger than ${max} bytes`);
}
