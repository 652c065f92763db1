/**
 * TLS material for both servers, read once at start. TLS is on when `cert_file`
 * and `key_file` are set; `client_auth: require` with `ca_file` turns on mTLS.
 * Key material is never logged.
 */
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import type { SecureContextOptions, TlsOptions } from "node:tls";
import type { Config } from "../config.js";
import { ConfigError } from "../config.js";

export type TlsConfig = Config["http"]["tls"];

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requireClientCert: boolean;
}

/** Reads the files named by a `tls` config block; undefined when TLS is off. */
export function loadTls(cfg: TlsConfig, keyPrefix: string): TlsMaterial | undefined {
  if (!cfg.cert_file && !cfg.key_file) {
    if (cfg.client_auth === "require") throw new ConfigError(`${keyPrefix}.client_auth require needs ${keyPrefix}.cert_file and key_file`);
    return undefined;
  }
  if (!cfg.cert_file || !cfg.key_file) throw new ConfigError(`${keyPrefix}: set both cert_file and key_file`);
  const read = (file: string, key: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new ConfigError(`${keyPrefix}.${key}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
    }
  };
  const m: TlsMaterial = { cert: read(cfg.cert_file, "cert_file"), key: read(cfg.key_file, "key_file"), requireClientCert: cfg.client_auth === "require" };
  if (cfg.ca_file) m.ca = read(cfg.ca_file, "ca_file");
  if (m.requireClientCert && !m.ca) throw new ConfigError(`${keyPrefix}.client_auth require needs ${keyPrefix}.ca_file`);
  return m;
}

/** Options for `https.createServer`. */
export function httpsOptions(m: TlsMaterial): TlsOptions & SecureContextOptions {
  const o: TlsOptions & SecureContextOptions = { cert: m.cert, key: m.key, minVersion: "TLSv1.2" };
  if (m.ca) o.ca = m.ca;
  if (m.requireClientCert) {
    o.requestCert = true;
    o.rejectUnauthorized = true;
  }
  return o;
}

/** gRPC server credentials: insecure without material. */
export function grpcCredentials(m: TlsMaterial | undefined): ServerCredentials {
  if (!m) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(m.ca ?? null, [{ private_key: m.key, cert_chain: m.cert }], m.requireClientCert);
}
