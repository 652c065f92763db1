import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildInfo, packageRoot, readBuildInfo } from "../../src/version.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function fakePackage(version: string): string {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-version-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "dnsgeo", version }));
  return dir;
}

describe("build info", () => {
  it("reads the version from the checkout's package.json and the Node.js version running", () => {
    // Prepare
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    // Act
    const b = buildInfo();
    // Assess
    expect(b.version).toBe(pkg.version);
    expect(b.node).toBe(process.versions.node);
  });

  it("finds the package root from a folder nested below it, skipping other packages' package.json", () => {
    // Prepare
    const root = fakePackage("9.8.7");
    const nested = join(root, "node_modules", "other", "dist", "src");
    mkdirSync(nested, { recursive: true });
    writeFileSync(join(root, "node_modules", "other", "package.json"), JSON.stringify({ name: "other", version: "1.0.0" }));
    // Act
    const found = packageRoot(nested);
    // Assess
    expect(found).toBe(root);
    expect(readBuildInfo(found).version).toBe("9.8.7");
  });

  it("takes the commit from build-info.json, else from .git (loose ref, then packed-refs), else none", () => {
    // Prepare
    const none = fakePackage("1.2.3");
    const built = fakePackage("1.2.3");
    writeFileSync(join(built, "build-info.json"), JSON.stringify({ commit: "ABCDEF1234567" }));
    const loose = fakePackage("1.2.3");
    mkdirSync(join(loose, ".git", "refs", "heads"), { recursive: true });
    writeFileSync(join(loose, ".git", "HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(loose, ".git", "refs", "heads", "main"), "1111111111111111111111111111111111111111\n");
    const packed = fakePackage("1.2.3");
    mkdirSync(join(packed, ".git"), { recursive: true });
    writeFileSync(join(packed, ".git", "HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(packed, ".git", "packed-refs"), "# pack-refs with: peeled\n2222222222222222222222222222222222222222 refs/heads/other\n3333333333333333333333333333333333333333 refs/heads/main\n");
    const bogus = fakePackage("1.2.3");
    writeFileSync(join(bogus, "build-info.json"), JSON.stringify({ commit: "not a sha" }));
    // Act / Assess
    expect(readBuildInfo(none).commit).toBeUndefined();
    expect(readBuildInfo(built).commit).toBe("abcdef1234567");
    expect(readBuildInfo(loose).commit).toBe("1111111111111111111111111111111111111111");
    expect(readBuildInfo(packed).commit).toBe("3333333333333333333333333333333333333333");
    expect(readBuildInfo(bogus).commit).toBeUndefined();
  });
});
