/**
 * The `dnsgeo` command line: one file per verb, wired here. Usage errors exit 2
 * with a one-line message; `--help` works on every verb.
 */
import { Command, CommanderError } from "commander";
import { CliFailure, EXIT_CONFIG, EXIT_USAGE, type CliContext } from "./context.js";
import { ConfigError } from "../config.js";
import { registerEnrich } from "./enrich.js";
import { registerLookup } from "./lookup.js";
import { registerServe } from "./serve.js";
import { registerTable } from "./table.js";
import { registerCache } from "./cache.js";
import { registerCheck } from "./check.js";
import { registerDeadLetter } from "./dead-letter.js";
import { buildInfo } from "../version.js";

/** Builds the program; `configFile` receives `--config` before any action runs. */
export function buildProgram(ctx: CliContext, onConfigFile: (file: string | undefined) => void): Command {
  const program = new Command("dnsgeo")
    .description("Adds geo, ASN, ORG and ISP data to DNS logs (Route 53 Resolver, DNS Firewall, Zeek, Sysmon, ECS).")
    .version(buildInfo().version, "-V, --version", "print the version and exit")
    .option("-c, --config <file>", "YAML config file (also DNSGEO_CONFIG); DNSGEO_* environment variables win over it")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
    })
    .hook("preAction", (thisCommand) => {
      onConfigFile(thisCommand.opts<{ config?: string }>().config);
    });
  registerServe(program, ctx);
  registerEnrich(program, ctx);
  registerLookup(program, ctx);
  registerTable(program, ctx);
  registerCache(program, ctx);
  registerCheck(program, ctx);
  registerDeadLetter(program, ctx);
  return program;
}

/** Runs argv; resolves to the exit code. */
export async function runCli(argv: readonly string[], ctx: CliContext, onConfigFile: (file: string | undefined) => void): Promise<number> {
  const program = buildProgram(ctx, onConfigFile);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CliFailure) {
      ctx.stderr.write(`dnsgeo: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ConfigError) {
      ctx.stderr.write(`dnsgeo: ${e.message}\n`);
      return EXIT_CONFIG;
    }
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return 0;
      // commander has already printed its one-line message to stderr.
      return e.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    // Anything else (a port in use, a file that can't be read): one line for the user,
    // the stack in the debug log.
    ctx.logger.debug({ err: e }, "command failed");
    ctx.stderr.write(`dnsgeo: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
