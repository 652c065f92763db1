/**
 * A next hop that refuses some records for good: dnsgeo delivers every other record
 * exactly once, keeps the refused ones in its dead-letter file, and
 * `dnsgeo dead-letter list|replay` shows and re-sends exactly those.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, readFileSync } from "node:fs";
import { Agent, request } from "undici";
import { deadLetterPath } from "../../../src/config.js";
import { runCli } from "../../helpers/cli.js";
import { publicIp, route53Record } from "../../helpers/shipper.js";
import { startHarness, type Harness } from "./harness.js";

const TOTAL = Number(process.env.DNSGEO_DEAD_LETTER_RECORDS ?? 20_000);
const BATCH = 500;
const marked = (i: number): boolean => i % 100 === 42;

/** Answers 400 to any request holding a record with `mark: true` while `refuse` is on; counts accepted rids. */
async function startPickyHop() {
  const hop = { refuse: true, accepted: new Map<string, number>(), url: "", close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const recs = Buffer.concat(chunks)
        .toString("utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as { rid: string; mark?: boolean });
      if (hop.refuse && recs.some((r) => r.mark === true)) return void res.writeHead(400, { "content-type": "text/plain" }).end("marked record refused");
      for (const r of recs) hop.accepted.set(r.rid, (hop.accepted.get(r.rid) ?? 0) + 1);
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  hop.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dns/enriched`;
  hop.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return hop;
}

function line(i: number): string {
  const rec = JSON.parse(route53Record(`r${i}`, [publicIp(i), "10.0.0.1"])) as Record<string, unknown>;
  if (marked(i)) rec.mark = true;
  return JSON.stringify(rec);
}

describe(`forward mode with a next hop that refuses 1 % of ${TOTAL} records`, () => {
  let hop: Awaited<ReturnType<typeof startPickyHop>>;
  let h: Harness;
  const agent = new Agent({ connections: 4 });
  beforeAll(async () => {
    hop = await startPickyHop();
    h = await startHarness({ forward: { url: hop.url, content_type: "application/json", framing: "ndjson" }, ipapi: { enabled: false } });
  });
  afterAll(async () => {
    await h?.close();
    await hop?.close();
    await agent.close();
  });

  it("delivers every other record once, dead-letters exactly the marked ones, and replay delivers those", async () => {
    // Act: a shipper sends batches of 500, four at a time
    const statuses: number[] = [];
    const starts = Array.from({ length: Math.ceil(TOTAL / BATCH) }, (_, b) => b * BATCH);
    for (let k = 0; k < starts.length; k += 4) {
      await Promise.all(
        starts.slice(k, k + 4).map(async (s) => {
          const body = Array.from({ length: Math.min(BATCH, TOTAL - s) }, (_, j) => line(s + j)).join("\n") + "\n";
          const res = await request(`${h.httpUrl}/v1/forward`, { method: "POST", body, headers: { "content-type": "application/x-ndjson" }, dispatcher: agent });
          await res.body.dump();
          statuses.push(res.statusCode);
        }),
      );
    }
    // Assess: every batch acknowledged; unmarked records arrived exactly once, no marked one
    expect(statuses.every((s) => s === 200)).toBe(true);
    const ids = Array.from({ length: TOTAL }, (_, i) => i);
    const expectedOk = ids.filter((i) => !marked(i)).map((i) => `r${i}`);
    const expectedMarked = ids.filter(marked).map((i) => `r${i}`);
    expect(hop.accepted.size).toBe(expectedOk.length);
    expect(expectedOk.every((rid) => hop.accepted.get(rid) === 1)).toBe(true);

    // `dead-letter list` prints exactly the marked records, each with its reason
    const env = { DNSGEO_DATA_DIR: h.app.config.data_dir, DNSGEO_FORWARD_URL: hop.url, DNSGEO_FORWARD_CONTENT_TYPE: "application/json" };
    const list = await runCli(["dead-letter", "list"], { env });
    expect(list.code, list.stderr).toBe(0);
    const listed = list.stdout
      .toString("utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { rid: string; dnsgeo?: unknown; dnsgeo_dead_letter: { status: number; answer: string } });
    expect(listed.map((r) => r.rid).sort()).toEqual(expectedMarked.sort());
    expect(listed.every((r) => r.dnsgeo_dead_letter.status === 400 && r.dnsgeo_dead_letter.answer === "marked record refused" && r.dnsgeo !== undefined)).toBe(true);

    // Act: the next hop is fixed; replay
    hop.refuse = false;
    const replay = await runCli(["dead-letter", "replay"], { env });
    // Assess: all delivered, once; the file is empty
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout.toString("utf8"))).toMatchObject({ records: expectedMarked.length, delivered: expectedMarked.length, left: 0 });
    expect(expectedMarked.every((rid) => hop.accepted.get(rid) === 1)).toBe(true);
    expect(hop.accepted.size).toBe(TOTAL);
    const path = deadLetterPath(h.app.config);
    expect(!existsSync(path) || readFileSync(path, "utf8") === "").toBe(true);
    const after = await runCli(["dead-letter", "list"], { env });
    expect(after.stdout.toString("utf8")).toBe("");
  }, 120_000);
});
