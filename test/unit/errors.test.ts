/** The error table's gRPC codes are grpc-js's own numbers, and every code maps to both protocols. */
import { describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { ERROR_CODES, GrpcStatus } from "../../src/errors.js";

describe("error table", () => {
  it("names each gRPC status with grpc-js's number for it", () => {
    for (const [name, n] of Object.entries(GrpcStatus)) expect(status[name as keyof typeof status], name).toBe(n);
  });

  it("gives every code an HTTP status, a gRPC status and a retryable flag that agree with what shippers do", () => {
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      expect(Object.values(GrpcStatus), code).toContain(spec.grpc);
      if (spec.http === 503) expect(spec.retryable, code).toBe(true);
      // Shippers retry 408 and 429 and drop every other 4xx.
      if (spec.http >= 400 && spec.http < 500) expect(spec.retryable, code).toBe([408, 429].includes(spec.http));
    }
  });
});
