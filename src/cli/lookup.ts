/** `dnsgeo lookup IP…`: one JSON line per IP on stdout (GeoInfo under `geo`). */
import type { Command } from "commander";
import { createApp } from "../app.js";
import { CliFailure, parsePositiveInt, type CliContext } from "./context.js";

export function registerLookup(program: Command, ctx: CliContext): void {
  program
    .command("lookup")
    .description("look IPs up through the cache tiers and providers; prints one JSON object per IP")
    .argument("<ip...>", "IPv4 or IPv6 addresses")
    .option("--deadline-ms <ms>", "how long to wait for the provider (default ipapi.timeout_ms)", parsePositiveInt)
    .action(async (ips: string[], flags: { deadlineMs?: number }) => {
      const cfg = ctx.loadConfig();
      const app = await createApp(cfg, { logger: ctx.logger });
      let bad = 0;
      try {
        const answers = await app.lookupIps(ips, { deadlineMs: flags.deadlineMs ?? cfg.ipapi.timeout_ms });
        for (const a of answers) {
          if (a.status === "invalid") bad++;
          ctx.stdout.write(JSON.stringify(a) + "\n");
        }
      } finally {
        await app.close();
      }
      if (bad > 0) throw new CliFailure(`${bad} of ${ips.length} argument(s) are not IP addresses`, 1);
    });
}
