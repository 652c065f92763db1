/**
 * ip-api bans hosts that keep sending after a 429: once the limiter has paused,
 * no request may leave, including ones the service had started but the HTTP
 * client had not yet put on the wire.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BackfillQueue } from "../../../src/lookup/backfill-queue.js";
import { DefaultGeoService, MAX_IN_FLIGHT } from "../../../src/lookup/geo-service.js";
import { IpApiProvider } from "../../../src/lookup/ipapi-provider.js";
import { MemoryTier } from "../../../src/lookup/memory-tier.js";
import { RateLimiter } from "../../../src/lookup/rate-limiter.js";
import { silentLogger } from "../../../src/observability/logger.js";

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A server answering every batch with `status`, `X-Rl: 0`, `X-Ttl: 60`. */
async function limitedServer(status: number): Promise<{ url: string; received: () => number }> {
  let received = 0;
  const srv: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received++;
      res.writeHead(status, { "x-rl": "0", "x-ttl": "60", "content-type": "application/json" });
      res.end("");
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  closers.push(() => new Promise<void>((r) => srv.close(() => r())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, received: () => received };
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

describe("provider sends after the limiter stops", () => {
  for (const status of [429, 403]) {
    it(`starts no request after a ${status}: at most the ones already out`, async () => {
      // Prepare: a full window's budget of single-IP batches waiting
      const fake = await limitedServer(status);
      const logger = silentLogger();
      const provider = new IpApiProvider({ url: fake.url, fields: "status", lang: "en", batchSize: 1, timeoutMs: 5000, ttlS: 100, negativeTtlS: 10, logger });
      const limiter = new RateLimiter({ requestsPerWindow: 15, windowS: 60, logger });
      const svc = new DefaultGeoService({
        cache: new MemoryTier({ maxEntries: 100 }), provider, limiter, queue: new BackfillQueue({ max: 1000 }), logger,
        deadlineMs: 50, lingerMs: 0, batchSize: 1, staleMaxS: 0, shutdownTimeoutMs: 100,
      });
      closers.push(() => provider.close(), () => svc.close());
      // Act
      await svc.lookup(Array.from({ length: 15 }, (_, i) => `8.8.${i}.1`));
      await until(() => svc.stats().requests > 0 && svc.stats().failedRequests === svc.stats().requests, 5000);
      // Assess: only the requests in flight when the first answer came; the server saw each one
      const { requests, failedRequests } = svc.stats();
      expect(requests).toBeGreaterThan(0);
      expect(requests).toBeLessThanOrEqual(MAX_IN_FLIGHT);
      expect(failedRequests).toBe(requests);
      expect(fake.received()).toBe(requests);
      expect(limiter.waitMs()).toBeGreaterThan(0);
    });
  }
});
