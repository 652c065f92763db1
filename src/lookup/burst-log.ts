/**
 * "Log the first, count the rest": one warning per key per window, carrying how
 * many more happened since the last one, so a tier that is down for an hour
 * writes a line every few seconds instead of one per batch.
 */
import type { Logger } from "../observability/logger.js";
import { type Clock, systemClock } from "./lookup.js";

export class BurstLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly windowMs = 10_000,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Logs `msg` at warn for `key` unless it was logged less than a window ago; counts it then. */
  warn(key: string, fields: Record<string, unknown>, msg: string): void {
    this.log("warn", key, fields, msg);
  }

  /** As `warn`, at `level`. Keys come from closed sets (codes, routes), so the map stays small. */
  log(level: "error" | "warn" | "info", key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.clock.now();
    const s = this.last.get(key);
    if (s && now - s.at < this.windowMs) {
      s.suppressed++;
      return;
    }
    const suppressed = s?.suppressed ?? 0;
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger[level](Object.assign({ suppressedSinceLast: suppressed }, fields), msg);
  }
}
