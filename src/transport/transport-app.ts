/**
 * What the transports need from the app: a narrow view of `App`, so servers can be
 * built and tested with any object of this shape.
 */
import type { App } from "../app.js";

export type TransportApp = Pick<App, "config" | "logger" | "metrics" | "enricher" | "lookupIps" | "ready"> &
  /** The memory tier, when on: the status page's map samples its most recent entries. */
  Partial<Pick<App, "memory">>;
