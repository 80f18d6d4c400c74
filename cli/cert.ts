/**
 * @module `metaq cert`: writes a self-signed certificate and its key (PEM) for trying TLS out
 * and for tests, made with node:crypto alone (lib/security/cert.ts), so no `openssl` is needed.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { selfSignedCertificate } from "../lib/security/cert.ts";
import { CliError, type CommandSpec, integerFlag, parseFlags } from "./common.ts";

const USAGE = `Usage: metaq cert --out DIR [--host NAME]... [--days N]

Writes DIR/cert.pem and DIR/key.pem (mode 0600): a self-signed ECDSA P-256 certificate, its own
CA, valid for the given DNS names and IP addresses. Use it as tlsCertFile/tlsKeyFile on every
node, and as --ca on clients. For production, use certificates from your own CA.

Options:
  --out DIR     directory to write into (created if missing; existing files are not replaced)
  --host NAME   DNS name or IP address, repeatable (default: localhost, 127.0.0.1, ::1)
  --days N      validity in days (default 365)

Examples:
  metaq cert --out ./tls
  metaq cert --out /etc/metaq/tls --host broker1.example --host 10.0.0.5 --days 730`;

const FLAGS = {
  out: { type: "string" },
  host: { type: "string", multiple: true },
  days: { type: "string" },
} as const;

export const cert: CommandSpec = {
  name: "cert",
  usage: USAGE,
  run(args) {
    const { values } = parseFlags("cert", args, FLAGS);
    if (values.help) {
      console.log(USAGE);
      return Promise.resolve(0);
    }
    if (!values.out) throw new CliError("Cannot make a certificate: give --out DIR");
    const hosts = values.host && values.host.length > 0
      ? values.host
      : ["localhost", "127.0.0.1", "::1"];
    for (const host of hosts) {
      if (!/^[A-Za-z0-9.:*-]{1,253}$/.test(host)) {
        throw new CliError(`Cannot use --host ${host}: expected a DNS name or an IP address`);
      }
    }
    const days = integerFlag("days", values.days, { min: 1, max: 36500 }) ?? 365;
    const certPath = path.join(values.out, "cert.pem");
    const keyPath = path.join(values.out, "key.pem");
    for (const file of [certPath, keyPath]) {
      if (fs.existsSync(file)) throw new CliError(`Cannot write ${file}: it exists`);
    }
    const pair = selfSignedCertificate({ hosts, days });
    try {
      fs.mkdirSync(values.out, { recursive: true });
      fs.writeFileSync(keyPath, pair.key, { mode: 0o600, flag: "wx" });
      fs.writeFileSync(certPath, pair.cert, { mode: 0o644, flag: "wx" });
    } catch (error) {
      throw new CliError(`Cannot write the certificate: ${(error as Error).message}`, 1);
    }
    console.log(`Wrote ${certPath} and ${keyPath} for ${hosts.join(", ")}, valid ${days} days`);
    return Promise.resolve(0);
  },
};
