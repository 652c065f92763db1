/**
 * dynalite (an in-process DynamoDB) for tests: started on 127.0.0.1 port 0,
 * with a client and a fresh table per test, fake credentials passed in the
 * client config (never through the environment).
 */
import { createRequire } from "node:module";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { createDynamoClient, createTable } from "../../src/lookup/dynamodb-tier.js";

type DynaliteFactory = (opts: { createTableMs: number; deleteTableMs: number; updateTableMs: number }) => Server;

/** Fake credentials for local endpoints. */
export const FAKE_CREDENTIALS = { accessKeyId: "x", secretAccessKey: "x" };

export interface Dynalite {
  endpoint: string;
  /** A client for this endpoint with fake credentials and short timeouts. */
  client(opts?: { connectTimeoutMs?: number; requestTimeoutMs?: number }): DynamoDBDocumentClient;
  /** Creates a table with a name not used before in this process; returns its name. */
  newTable(prefix?: string): Promise<string>;
  close(): Promise<void>;
}

let tableSeq = 0;

/** Starts dynalite in this process. */
export async function startDynalite(): Promise<Dynalite> {
  const dynalite = createRequire(import.meta.url)("dynalite") as DynaliteFactory;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  // node:http closes an idle kept-alive connection after 5 s; a client reusing it at that
  // moment gets ECONNRESET (seen in the fault suite, whose scenarios last about 5 s and whose
  // admin client does not retry). Idle connections stay open here until close().
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: DynamoDBDocumentClient[] = [];
  const client = (opts: { connectTimeoutMs?: number; requestTimeoutMs?: number } = {}): DynamoDBDocumentClient => {
    const c = createDynamoClient({
      endpoint,
      region: "us-east-1",
      credentials: FAKE_CREDENTIALS,
      connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      maxAttempts: 1,
    });
    clients.push(c);
    return c;
  };
  const admin = client();
  return {
    endpoint,
    client,
    async newTable(prefix = "dnsgeo-test") {
      const name = `${prefix}-${process.pid}-${++tableSeq}`;
      await createTable(admin, name);
      return name;
    },
    async close() {
      for (const c of clients) c.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
