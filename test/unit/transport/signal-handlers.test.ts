import { describe, expect, it } from "vitest";
import { EventEmitter } from "node:events";
import { installSignalHandlers } from "../../../src/cli/serve.js";

describe("installSignalHandlers", () => {
  it("closes gracefully on the first signal, exits 0 after close, and exits at once on a second", async () => {
    // Prepare
    const source = new EventEmitter();
    const exits: number[] = [];
    let release!: () => void;
    let closes = 0;
    const close = (): Promise<void> => {
      closes++;
      return new Promise((resolve) => (release = resolve));
    };
    installSignalHandlers(source, close, (c) => exits.push(c));
    // Act
    source.emit("SIGTERM");
    const afterFirst = [...exits];
    source.emit("SIGINT");
    const afterSecond = [...exits];
    release();
    await new Promise((r) => setImmediate(r));
    // Assess
    expect(closes).toBe(1);
    expect(afterFirst).toEqual([]);
    expect(afterSecond).toEqual([130]);
    expect(exits).toEqual([130, 0]);
  });

  it("exits 1 when close fails, and the returned function removes the handlers", async () => {
    // Prepare
    const source = new EventEmitter();
    const exits: number[] = [];
    const remove = installSignalHandlers(source, () => Promise.reject(new Error("x")), (c) => exits.push(c));
    // Act
    source.emit("SIGTERM");
    await new Promise((r) => setImmediate(r));
    remove();
    // Assess
    expect(exits).toEqual([1]);
    expect(source.listenerCount("SIGTERM")).toBe(0);
  });
});
