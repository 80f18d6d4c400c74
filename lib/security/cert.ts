/**
 * @module Self-signed certificates without an `openssl` binary: an ECDSA P-256 key from
 * node:crypto and an X.509 v3 certificate whose DER this file writes itself. For tests and for
 * trying TLS out; production deployments bring certificates from their own CA.
 *
 * ```text
 * Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature BIT STRING }
 * TBSCertificate ::= SEQUENCE { [0] version(v3), serial, signature, issuer, validity,
 *                               subject, subjectPublicKeyInfo, [3] extensions }
 * extensions: basicConstraints CA:TRUE (the certificate is its own trust anchor), keyUsage
 *             digitalSignature+keyCertSign, extKeyUsage serverAuth+clientAuth,
 *             subjectAltName (DNS names and IP addresses)
 * ```
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { isIP } from "node:net";
import { concatBytes } from "../bytes.ts";

export interface SelfSignedOptions {
  /** DNS names and IP addresses the certificate is valid for; the first is the common name. */
  readonly hosts: readonly string[];
  readonly days?: number;
  /** Start of validity (default now); it is backdated one hour for clock skew. */
  readonly nowMs?: number;
}

export interface CertificatePair {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
}

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
};

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

export function selfSignedCertificate(options: SelfSignedOptions): CertificatePair {
  if (options.hosts.length === 0) throw new Error("Cannot make a certificate for no host");
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const now = options.nowMs ?? Date.now();
  const name = der.sequence(
    der.set(der.sequence(der.oid(OID.commonName), der.utf8(options.hosts[0]))),
    der.set(der.sequence(der.oid(OID.organization), der.utf8("metaq self-signed"))),
  );
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // a positive INTEGER
  serial[0] |= 0x01; // with no leading zero byte
  const algorithm = der.sequence(der.oid(OID.ecdsaWithSha256));
  const tbs = der.sequence(
    der.explicit(0, der.integer(new Uint8Array([2]))),
    der.integer(new Uint8Array(serial)),
    algorithm,
    name,
    der.sequence(der.time(now - HOUR_MS), der.time(now + (options.days ?? 365) * DAY_MS)),
    name,
    spki,
    der.explicit(3, der.sequence(...extensions(options.hosts))),
  );
  const signature = new Uint8Array(sign("sha256", tbs, privateKey));
  const certificate = der.sequence(tbs, algorithm, der.bitString(signature));
  return {
    cert: pem("CERTIFICATE", certificate),
    key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

function extensions(hosts: readonly string[]): Uint8Array[] {
  const names = hosts.map((host) =>
    isIP(host) ? der.tagged(0x87, ipBytes(host)) : der.tagged(0x82, ascii(host))
  );
  return [
    extension(OID.basicConstraints, true, der.sequence(der.boolean(true))),
    // keyUsage bits: digitalSignature (bit 0) and keyCertSign (bit 5) -> 0b10000100, 2 unused bits
    extension(OID.keyUsage, true, der.tagged(0x03, new Uint8Array([0x02, 0x84]))),
    extension(
      OID.extKeyUsage,
      false,
      der.sequence(der.oid(OID.serverAuth), der.oid(OID.clientAuth)),
    ),
    extension(OID.subjectAltName, false, der.sequence(...names)),
  ];
}

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return der.sequence(
    der.oid(oid),
    ...(critical ? [der.boolean(true)] : []),
    der.tagged(0x04, value),
  );
}

/** The few DER encodings a certificate needs. */
const der = {
  tagged(tag: number, content: Uint8Array): Uint8Array {
    return concatBytes([new Uint8Array([tag]), length(content.length), content]);
  },
  sequence(...items: Uint8Array[]): Uint8Array {
    return der.tagged(0x30, concatBytes(items));
  },
  set(...items: Uint8Array[]): Uint8Array {
    return der.tagged(0x31, concatBytes(items));
  },
  explicit(number: number, content: Uint8Array): Uint8Array {
    return der.tagged(0xa0 + number, content);
  },
  integer(bytes: Uint8Array): Uint8Array {
    return der.tagged(0x02, bytes);
  },
  boolean(value: boolean): Uint8Array {
    return der.tagged(0x01, new Uint8Array([value ? 0xff : 0]));
  },
  utf8(text: string): Uint8Array {
    return der.tagged(0x0c, new TextEncoder().encode(text));
  },
  bitString(bytes: Uint8Array): Uint8Array {
    return der.tagged(0x03, concatBytes([new Uint8Array([0]), bytes]));
  },
  /** UTCTime (years 1950-2049) as RFC 5280 requires, else GeneralizedTime. */
  time(ms: number): Uint8Array {
    const iso = new Date(ms).toISOString(); // 2025-01-02T03:04:05.678Z
    const digits = iso.slice(0, 19).replace(/[-:T]/g, "") + "Z"; // 20250102030405Z
    const year = Number(iso.slice(0, 4));
    return year < 2050 ? der.tagged(0x17, ascii(digits.slice(2))) : der.tagged(0x18, ascii(digits));
  },
  oid(text: string): Uint8Array {
    const parts = text.split(".").map(Number);
    const bytes = [parts[0] * 40 + parts[1]];
    for (const part of parts.slice(2)) {
      const groups = [part & 0x7f];
      for (let rest = part >>> 7; rest > 0; rest >>>= 7) groups.unshift((rest & 0x7f) | 0x80);
      bytes.push(...groups);
    }
    return der.tagged(0x06, new Uint8Array(bytes));
  },
};

function length(count: number): Uint8Array {
  if (count < 0x80) return new Uint8Array([count]);
  const bytes: number[] = [];
  for (let rest = count; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return new Uint8Array([0x80 | bytes.length, ...bytes]);
}

function ipBytes(address: string): Uint8Array {
  if (isIP(address) === 4) return new Uint8Array(address.split(".").map(Number));
  const [head, tail = ""] = address.split("::");
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  const left = groups(head);
  const right = groups(tail);
  const words = address.includes("::")
    ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right]
    : left;
  return new Uint8Array(words.flatMap((word) => {
    const value = parseInt(word, 16);
    return [value >> 8, value & 0xff];
  }));
}

function ascii(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function pem(label: string, bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
