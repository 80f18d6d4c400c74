/**
 * @module TLS material from the configuration: the certificate and key files (PEM) read once at
 * start-up, which ports use them, and the CA peers and clients check against. node:tls does the
 * rest on every runtime; HTTP goes through lib/runtime (Bun.serve's `tls`, or node:https).
 */
import * as fs from "node:fs";
import type { SystemConfig } from "../config/config.ts";

export interface TlsFiles {
  /** PEM certificate chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  /** PEM CA certificates a peer's certificate must chain to (the cert itself by default). */
  readonly ca: string;
}

export type TlsPort = "client" | "http" | "peer";

export class TlsConfigError extends Error {
  override readonly name = "TlsConfigError";
}

/** The TLS material for `port`, or undefined when that port speaks plain TCP. */
export function tlsFor(system: SystemConfig, port: TlsPort): TlsFiles | undefined {
  if (system.tlsCertFile === "") return undefined;
  const ports = system.tlsPorts.split(",").map((part) => part.trim());
  if (!ports.includes(port)) return undefined;
  const cert = readPem(system.tlsCertFile, "tlsCertFile");
  return {
    cert,
    key: readPem(system.tlsKeyFile, "tlsKeyFile"),
    ca: system.tlsCaFile === "" ? cert : readPem(system.tlsCaFile, "tlsCaFile"),
  };
}

/** The cluster secret from `clusterSecret` or the first line of `clusterSecretFile`. */
export function clusterSecretOf(system: SystemConfig): string | undefined {
  if (system.clusterSecret !== "") return system.clusterSecret;
  if (system.clusterSecretFile === "") return undefined;
  const secret = readPem(system.clusterSecretFile, "clusterSecretFile").split(/\r?\n/)[0].trim();
  if (secret.length < 16) {
    throw new TlsConfigError(
      `Cannot use clusterSecretFile ${system.clusterSecretFile}: the secret must be at least 16 characters`,
    );
  }
  return secret;
}

function readPem(path: string, key: string): string {
  try {
    return fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new TlsConfigError(`Cannot read ${key} ${path}: ${(error as Error).message}`);
  }
}
