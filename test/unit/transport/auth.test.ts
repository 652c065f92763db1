import { describe, expect, it } from "vitest";
import { createSecretCheck, createTokenCheck } from "../../../src/transport/auth.js";

describe("createTokenCheck", () => {
  it("accepts only `Bearer <token>` with the exact token", () => {
    // Prepare
    const check = createTokenCheck("abc123");
    // Act
    const results = {
      right: check("Bearer abc123"),
      scheme: check("bearer abc123"),
      wrong: check("Bearer abc124"),
      prefix: check("Bearer abc12"),
      longer: check("Bearer abc1234"),
      noScheme: check("abc123"),
      basic: check("Basic abc123"),
      missing: check(undefined),
      empty: check(""),
    };
    // Assess
    expect(results).toEqual({ right: true, scheme: true, wrong: false, prefix: false, longer: false, noScheme: false, basic: false, missing: false, empty: false });
  });

  it("lets everything through when no token is configured", () => {
    expect(createTokenCheck(undefined)(undefined)).toBe(true);
  });
});

describe("createSecretCheck", () => {
  it("compares a raw secret", () => {
    const check = createSecretCheck("k");
    expect([check("k"), check("K"), check(undefined), check("")]).toEqual([true, false, false, false]);
  });
});
