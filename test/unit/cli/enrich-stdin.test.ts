/** `dnsgeo enrich` reading stdin in arbitrary chunks: nothing garbled, nothing lost. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../../src/app.js";
import { runEnrich } from "../../../src/cli/enrich.js";
import type { CliContext } from "../../../src/cli/context.js";
import { loadConfig } from "../../../src/config.js";
import { silentLogger } from "../../../src/observability/logger.js";

let app: App;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dnsgeo-stdin-"));
  app = await createApp(loadConfig({ overrides: { data_dir: dir, ipapi: { enabled: false }, mmdb: { enabled: false } } }));
});
afterAll(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

function ctxFor(chunks: Buffer[] | NodeJS.ReadableStream): { ctx: CliContext; out: () => string } {
  const got: Buffer[] = [];
  const stdout = new Writable({
    write(c: Buffer, _e, cb) {
      got.push(c);
      cb();
    },
  });
  const stderr = new Writable({ write: (_c, _e, cb) => cb() });
  const ctx = { loadConfig: () => app.config, stdout, stderr, stdin: Array.isArray(chunks) ? Readable.from(chunks) : chunks, logger: silentLogger() } as unknown as CliContext;
  return { ctx, out: () => Buffer.concat(got).toString("utf8") };
}

describe("enrich from stdin", () => {
  it("keeps multi-byte characters split across chunks, lines split across chunks, CRLF and a last line without newline", async () => {
    // Prepare: every byte boundary of the body becomes a chunk boundary somewhere
    const recs = [
      { query: "münchen.example", answers: ["8.8.8.8"], "id.orig_h": "10.0.0.1", note: "€✓😀" },
      { query: "zürich.example", answers: ["1.1.1.1"], "id.orig_h": "10.0.0.2", note: "日本語" },
    ];
    const body = Buffer.from(JSON.stringify(recs[0]) + "\r\n" + JSON.stringify(recs[1]));
    for (const size of [1, 2, 3, 5, 7]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += size) chunks.push(body.subarray(i, i + size));
      const { ctx, out } = ctxFor(chunks);
      // Act
      await runEnrich(app, ctx, undefined, {});
      // Assess
      const lines = out().trimEnd().split("\n");
      expect(lines, `chunk size ${size}`).toHaveLength(2);
      expect(out()).not.toContain("\uFFFD");
      lines.forEach((l, i) => expect(JSON.parse(l)).toMatchObject(recs[i] as object));
    }
  });

  it("writes each record of a live stream as soon as its line is complete (tail -f)", async () => {
    // Prepare: a stream that sends one line and then waits
    const stdin = new PassThrough();
    const { ctx, out } = ctxFor(stdin);
    const rec = { query: "example.org", answers: ["8.8.8.8"], "id.orig_h": "10.0.0.1" };
    // Act
    const done = runEnrich(app, ctx, undefined, {});
    stdin.write(JSON.stringify(rec) + "\n");
    let waited = 0;
    while (out() === "" && waited < 5000) {
      await new Promise((r) => setTimeout(r, 20));
      waited += 20;
    }
    // Assess: the first record came out while the input is still open
    expect(JSON.parse(out())).toMatchObject(rec);
    stdin.end(JSON.stringify(rec) + "\n");
    await done;
    expect(out().trimEnd().split("\n")).toHaveLength(2);
  });

  it("reads a pretty-printed object whole and answers one object", async () => {
    const rec = { query: "example.org", answers: ["8.8.8.8"], "id.orig_h": "10.0.0.1" };
    const { ctx, out } = ctxFor([Buffer.from(JSON.stringify(rec, null, 2))]);
    await runEnrich(app, ctx, undefined, {});
    expect(JSON.parse(out())).toMatchObject(Object.assign({ dnsgeo: { status: "enriched" } }, rec));
  });

  it("recognises gzip even when its first bytes arrive one at a time", async () => {
    const rec = { query: "example.org", answers: ["8.8.8.8"], "id.orig_h": "10.0.0.1" };
    const gz = gzipSync(Buffer.from(JSON.stringify(rec) + "\n"));
    const chunks: Buffer[] = [];
    for (let i = 0; i < gz.length; i++) chunks.push(gz.subarray(i, i + 1));
    const { ctx, out } = ctxFor(chunks);
    await runEnrich(app, ctx, undefined, {});
    expect(JSON.parse(out())).toMatchObject(rec);
  });
});
