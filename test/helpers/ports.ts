import net from "node:net";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for configs of child processes
 * that bind it later (Fluent Bit, redis-server, a `dnsgeo serve` child).
 *
 * `listen(0)` would hand out a port from the kernel's ephemeral range (32768-60999 on
 * Linux), the same range every outgoing connection of every test takes its local port
 * from: between releasing the port and the child binding it, an outgoing connection
 * could take it and the child fail with EADDRINUSE (seen in CI). These ports come from
 * below that range instead, picked at random so that parallel test files rarely pick the
 * same one, and never twice from one process.
 */
const LOW = 20_000;
const HIGH = 32_000;
const given = new Set<number>();

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (given.has(port)) continue;
    if (await canBind(port)) {
      given.add(port);
      return port;
    }
  }
  throw new Error(`no free port found between ${LOW} and ${HIGH} after 200 tries`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}
