/**
 * A dnsgeo logger whose output tests can read: each NDJSON line it writes is kept as
 * text in `lines` and, parsed, in `records`.
 */
import { Writable } from "node:stream";
import { createLogger } from "../../src/observability/logger.js";

export interface CapturedLog {
  logger: ReturnType<typeof createLogger>;
  /** The lines written, without their newline; empty lines left out. */
  lines: string[];
  /** The lines that are JSON, parsed. */
  records: Array<Record<string, unknown>>;
}

/** A logger at `level` (info by default) that writes into `lines` and `records`. */
export function captureLog(level = "info"): CapturedLog {
  const lines: string[] = [];
  const records: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) {
        if (l.trim() === "") continue;
        lines.push(l);
        try {
          records.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          // Only `lines` holds a line that is not JSON.
        }
      }
      cb();
    },
  });
  return { logger: createLogger(level, dest), lines, records };
}
