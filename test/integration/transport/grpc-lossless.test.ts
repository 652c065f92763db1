/**
 * Lossless output over gRPC (issue 18): records sent to a real server through a real
 * grpc-js client come back with every original leaf's text, in ECS and QuickSight.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "./harness.js";
import { enrichmentClient, unary, type AnyClient, type EnrichResponse } from "./grpc-client.js";
import { recordText } from "../../helpers/lossless-arb.js";
import { expectLeavesKept } from "../../helpers/json-leaves.js";

describe("gRPC lossless output", () => {
  let h: Harness;
  let client: AnyClient;
  beforeAll(async () => {
    h = await startHarness({});
    client = enrichmentClient(h.grpcAddress);
  });
  afterAll(async () => {
    client.close();
    await h.close();
  });

  it("Enrich: every original leaf comes back with its text (ECS), and as the record column (QuickSight)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(recordText, { minLength: 1, maxLength: 6 }), async (recs) => {
        const records = recs.map((r) => r.text);
        const ecs = await unary<EnrichResponse>(client, "Enrich", { records });
        expect(ecs.records).toHaveLength(records.length);
        records.forEach((t, i) => expectLeavesKept(t, ecs.records[i] as string));
        const qs = await unary<EnrichResponse>(client, "Enrich", { records, format: "quicksight", explode: false });
        expect(qs.records.map((r) => (JSON.parse(r) as { record: string }).record)).toEqual(records);
      }),
      { numRuns: 60 },
    );
  });
});
