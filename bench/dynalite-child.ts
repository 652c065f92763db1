/**
 * dynalite in its own process for bench/tiers.ts, so the DynamoDB scenario's CPU
 * figure is dnsgeo's side alone (SDK client + pipeline), as it would be against
 * the real service. Sends `{ port }` over IPC once listening; exits with its parent.
 */
import { createRequire } from "node:module";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

const dynalite = createRequire(import.meta.url)("dynalite") as (o: Record<string, number>) => Server;
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on("disconnect", () => process.exit(0));
