/**
 * A throwaway CA, a server certificate (localhost, 127.0.0.1) and a client
 * certificate, made with the `openssl` CLI into a temporary directory at test time,
 * so no key is ever committed.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
}

/** True when the `openssl` CLI can be run. */
export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Makes the CA and both leaf certificates; throws when openssl is missing. */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "dnsgeo-certs-"));
  const p = (f: string): string => join(dir, f);
  const run = (args: string[]): void => {
    execFileSync("openssl", args, { stdio: "pipe" });
  };
  run(["req", "-x509", ...EC, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "36500", "-subj", "/CN=dnsgeo test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  const leaf = (name: string, cn: string, ext: string): void => {
    writeFileSync(p(`${name}.ext`), ext);
    run(["req", ...EC, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
    run(["x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p(`${name}.crt`), "-days", "36500", "-extfile", p(`${name}.ext`)]);
  };
  leaf("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  leaf("client", "dnsgeo-test-client", "extendedKeyUsage=clientAuth\n");
  return {
    dir,
    caFile: p("ca.crt"),
    serverCertFile: p("server.crt"),
    serverKeyFile: p("server.key"),
    clientCertFile: p("client.crt"),
    clientKeyFile: p("client.key"),
    ca: readFileSync(p("ca.crt")),
    clientCert: readFileSync(p("client.crt")),
    clientKey: readFileSync(p("client.key")),
  };
}
