/** pino JSON logs; the logger is injected everywhere, never imported as a global. */
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

/**
 * A JSON logger on stderr (stdout carries data for the CLI). Keys and tokens are
 * redacted wherever they appear under these names.
 */
export function createLogger(level: string, dest?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: "dnsgeo" },
      redact: { paths: ["key", "token", "authorization", "*.key", "*.token", "*.authorization", "headers.authorization"], censor: "[redacted]" },
    },
    dest ?? pino.destination(2),
  );
}

/** A logger that prints nothing (tests, embedding). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
