/**
 * The strict request decoder must read every well-formed EnrichRequest and
 * LookupRequest exactly as proto-loader does, and never throw on malformed bytes:
 * a truncated or corrupt message becomes a MalformedRequest that says what is wrong.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type * as grpc from "@grpc/grpc-js";
import { decodeEnrichRequest, decodeLookupRequest, MalformedRequest } from "../../../src/transport/grpc-codec.js";
import { loadEnrichmentDefinition } from "../../../src/transport/grpc-server.js";

const svc = loadEnrichmentDefinition()["dnsgeo.v1.Enrichment"] as grpc.ServiceDefinition;
const enrich = svc.Enrich as grpc.MethodDefinition<object, unknown>;
const lookup = svc.Lookup as grpc.MethodDefinition<object, unknown>;

// Well-formed Unicode only: a lone surrogate has no UTF-8 encoding.
const text = fc.string({ unit: fc.constantFrom("a", "{", '"', "é", "漢", "😀", "\n", "\u0000"), maxLength: 200 });
const enrichRequest = fc.record(
  { records: fc.array(text, { maxLength: 20 }), format: text, explode: fc.boolean(), id: text },
  { requiredKeys: ["records"] },
);

/** proto-loader's reading, with the synthetic oneof of `optional explode` left out. */
function protoLoaderRead(m: grpc.MethodDefinition<object, unknown>, b: Buffer): unknown {
  const o = m.requestDeserialize(b) as Record<string, unknown>;
  delete o._explode;
  return JSON.parse(JSON.stringify(o)) as unknown;
}

describe("decodeEnrichRequest / decodeLookupRequest", () => {
  it("read what protobufjs wrote exactly as proto-loader does", () => {
    fc.assert(
      fc.property(enrichRequest, fc.array(text, { maxLength: 20 }), (req, ips) => {
        const eb = enrich.requestSerialize(req);
        expect(JSON.parse(JSON.stringify(decodeEnrichRequest(eb)))).toEqual(protoLoaderRead(enrich, eb));
        const lb = lookup.requestSerialize({ ips });
        expect(decodeLookupRequest(lb)).toEqual(protoLoaderRead(lookup, lb));
      }),
      { numRuns: 300 },
    );
  });

  it("never throw on a cut or corrupted message, and name the problem when refusing", () => {
    fc.assert(
      fc.property(enrichRequest, fc.nat(), fc.nat({ max: 255 }), (req, at, byte) => {
        const b = enrich.requestSerialize(req);
        const cut = b.subarray(0, b.length === 0 ? 0 : at % b.length);
        const flipped = Buffer.from(b);
        if (flipped.length > 0) flipped[at % flipped.length] = byte;
        for (const x of [cut, flipped]) {
          const r = decodeEnrichRequest(x);
          if (r instanceof MalformedRequest) expect(r.reason).toMatch(/^malformed dnsgeo\.v1\.EnrichRequest: \S/);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("refuses a record cut inside its text, which protobufjs would read past", () => {
    // Prepare: records[0] = "abcdef", cut after 3 bytes of text.
    const b = Buffer.from([0x0a, 0x06, 0x61, 0x62, 0x63]);
    // Act
    const r = decodeEnrichRequest(b);
    // Assess
    expect(r).toBeInstanceOf(MalformedRequest);
    expect((r as MalformedRequest).reason).toBe("malformed dnsgeo.v1.EnrichRequest: records[0]: length 6 runs past the end of the message (3 bytes left)");
  });
});
