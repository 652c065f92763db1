/** Maps error codes to the closed `reason` label of `dnsgeo_requests_refused_total`. */
import type { ErrorCode } from "../errors.js";

/** The refusal reason for a code, or undefined when the code is not a refusal. */
export function refusalReason(code: ErrorCode): string | undefined {
  switch (code) {
    case "DNSGEO_BODY_TOO_LARGE":
      return "too_large";
    case "DNSGEO_TOO_MANY_RECORDS":
      return "too_many_records";
    case "DNSGEO_OVERLOADED":
      return "overload";
    case "DNSGEO_UNAUTHENTICATED":
      return "unauthorized";
    case "DNSGEO_UNSUPPORTED_ENCODING":
      return "unsupported_encoding";
    case "DNSGEO_BAD_COMPRESSION":
      return "bad_compression";
    case "DNSGEO_SHUTTING_DOWN":
      return "shutting_down";
    case "DNSGEO_BODY_TIMEOUT":
      return "body_timeout";
    default:
      return undefined;
  }
}
