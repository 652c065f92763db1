import { describe, expect, it } from "vitest";
import { negotiateEncoding } from "../../../src/transport/http-server.js";

describe("negotiateEncoding", () => {
  it("picks the best supported coding by q-value, then by preference", () => {
    expect(negotiateEncoding(undefined)).toBe("none");
    expect(negotiateEncoding("")).toBe("none");
    expect(negotiateEncoding("br")).toBe("none");
    expect(negotiateEncoding("gzip, deflate")).toBe("gzip");
    expect(negotiateEncoding("deflate, gzip;q=0.5")).toBe("deflate");
    expect(negotiateEncoding("snappy")).toBe("snappy");
    expect(negotiateEncoding("gzip;q=0, deflate;q=0.1")).toBe("deflate");
    expect(negotiateEncoding("*")).toBe("none");
  });
});
