/**
 * EncodedLogsRequest (otlp-proto.ts): a request encoded record by record, cut and
 * reassembled from bytes. Checked against protobufjs encoding the whole message: any run
 * of records decodes to exactly those records under their own resource and scope, the
 * whole run to the request itself, and `cut` keeps every part under the byte limit.
 */
import { describe, expect, it } from "vitest";
import { decodeLogsRequest, encodeLogsRequest, encodeLogsRequestPieces, type ExportLogsRequest, type KeyValue, type LogRecord } from "../../../src/transport/otlp-proto.js";

const kv = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });

/** 2 resources × (2, 1) scopes with 3–40 records each, bodies of growing size (the longest past 128 bytes, so lengths take two varint bytes). */
function request(): { req: ExportLogsRequest; ids: string[] } {
  const ids: string[] = [];
  let n = 0;
  const records = (count: number): LogRecord[] =>
    Array.from({ length: count }, () => {
      const id = `rec-${n++}`;
      ids.push(id);
      return { timeUnixNano: 1_700_000_000_000_000_000 + n, severityNumber: 9, body: { kvlistValue: { values: [kv("rid", id), kv("pad", "x".repeat(n * 7))] } }, attributes: [kv("n", String(n))] };
    });
  const req: ExportLogsRequest = {
    resourceLogs: [
      { resource: { attributes: [kv("service.name", "a")] }, schemaUrl: "https://example.com/r1", scopeLogs: [{ scope: { name: "s1", version: "1" }, logRecords: records(3) }, { scope: { name: "s2" }, schemaUrl: "https://example.com/s2", logRecords: records(40) }] },
      { resource: { attributes: [kv("service.name", "b")] }, scopeLogs: [{ scope: { name: "s3" }, logRecords: records(17) }] },
    ],
  };
  return { req, ids };
}

/** Each decoded record as "resource/scope/rid". */
function flat(req: ExportLogsRequest): string[] {
  const out: string[] = [];
  for (const rl of req.resourceLogs ?? []) {
    const svc = (rl.resource as { attributes?: KeyValue[] } | undefined)?.attributes?.[0]?.value?.stringValue;
    for (const sl of rl.scopeLogs ?? []) {
      const scope = (sl.scope as { name?: string } | undefined)?.name;
      for (const lr of sl.logRecords ?? []) out.push(`${svc}/${scope}/${lr.body?.kvlistValue?.values?.[0]?.value?.stringValue}`);
    }
  }
  return out;
}

describe("EncodedLogsRequest", () => {
  it("all records: the same message as protobufjs encoding it whole", async () => {
    const { req } = request();
    const enc = await encodeLogsRequestPieces(req);
    expect(enc.count).toBe(60);
    const whole = decodeLogsRequest(encodeLogsRequest(req));
    expect(JSON.stringify(decodeLogsRequest(enc.bytes(0, enc.count)))).toBe(JSON.stringify(whole));
  });

  it("any run of records: exactly those, each under its own resource and scope (schema URLs kept)", async () => {
    const { req } = request();
    const all = flat(decodeLogsRequest(encodeLogsRequest(req)));
    const enc = await encodeLogsRequestPieces(req);
    for (const [lo, hi] of [[0, 1], [2, 4], [3, 43], [42, 44], [10, 60], [59, 60], [0, 60]] as const) {
      const part = decodeLogsRequest(enc.bytes(lo, hi));
      expect(flat(part), `[${lo}, ${hi})`).toEqual(all.slice(lo, hi));
      if (lo <= 3 && hi > 3) expect(part.resourceLogs?.[0]?.scopeLogs?.find((s) => (s.scope as { name?: string }).name === "s2")?.schemaUrl).toBe("https://example.com/s2");
      if (lo < 43) expect(part.resourceLogs?.[0]?.schemaUrl).toBe("https://example.com/r1");
    }
  });

  it("cut: parts in order, every record once, each part at most the limit unless it is one record", async () => {
    const { req, ids } = request();
    const enc = await encodeLogsRequestPieces(req);
    for (const max of [1, 200, 700, 2000, 1e9]) {
      const runs = enc.cut(max);
      const got: string[] = [];
      let next = 0;
      for (const [lo, hi] of runs) {
        expect(lo).toBe(next);
        next = hi;
        const bytes = enc.bytes(lo, hi);
        if (hi - lo > 1) expect(bytes.length, `max ${max} [${lo}, ${hi})`).toBeLessThanOrEqual(max);
        got.push(...flat(decodeLogsRequest(bytes)).map((s) => s.split("/")[2] as string));
      }
      expect(got).toEqual(ids);
      if (max === 1e9) expect(runs).toEqual([[0, 60]]);
      if (max === 1) expect(runs.length).toBe(60);
    }
  });
});
