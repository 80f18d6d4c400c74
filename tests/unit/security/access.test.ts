import { expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { buildConfig, ConfigError } from "../../../lib/config/config.ts";
import { httpRequirement } from "../../../lib/http/auth.ts";
import { Parser } from "../../../lib/protocol/parser.ts";
import { AccessControl, refusal, requirementOf } from "../../../lib/security/access.ts";
import { selfSignedCertificate } from "../../../lib/security/cert.ts";
import { AUTH_SPEC, Gate } from "../../../lib/security/gate.ts";
import {
  decodeHello,
  encodeHello,
  newNonce,
  peerProof,
  proofsEqual,
} from "../../../lib/security/peer_auth.ts";

const TOKEN = "alice-token-0123456789";
const CONFIG = `[system]
[topic=*]
[user=alice]
token=${TOKEN}
produce=orders,logs-*
consume=orders
[user=ops]
tokenSha256=${createHash("sha256").update("ops-token-0123456789").digest("hex")}
admin=true
`;

function access(): AccessControl {
  return new AccessControl(buildConfig({ fileText: CONFIG }).users);
}

function parse(line: string) {
  const result = new Parser({ bodyBytesMax: 1024, extensions: new Map([["auth", AUTH_SPEC]]) })
    .push(new TextEncoder().encode(line));
  expect(result.error).toBeUndefined();
  return result.commands[0];
}

test("users come from [user=...] sections, keeping only the digest of the token", () => {
  const users = buildConfig({ fileText: CONFIG }).users;
  expect(users.map((user) => [user.name, user.produce, user.consume, user.admin])).toEqual([
    ["alice", ["orders", "logs-*"], ["orders"], false],
    ["ops", [], [], true],
  ]);
  expect(JSON.stringify(users)).not.toContain(TOKEN);
  expect(buildConfig({ fileText: "[system]\n" }).users).toEqual([]);
});

test("a user section is refused without a token, with both forms, or with an unknown key", () => {
  const bad = [
    "[user=x]\nproduce=a\n",
    `[user=x]\ntoken=${TOKEN}\ntokenSha256=${"0".repeat(64)}\n`,
    "[user=x]\ntoken=short\n",
    "[user=x]\ntokenSha256=abc\n",
    `[user=x]\ntoken=${TOKEN}\nprodcue=a\n`,
    `[user=x]\ntoken=${TOKEN}\n[user=x]\ntoken=${TOKEN}\n`,
    `[user=bad name]\ntoken=${TOKEN}\n`,
  ];
  for (const text of bad) expect(() => buildConfig({ fileText: text }), text).toThrow(ConfigError);
  expect(() => buildConfig({ fileText: `[user=x]\ntoken=${TOKEN}\nprodcue=a\n` })).toThrow(
    /did you mean 'produce'/,
  );
});

test("security keys are checked: TLS needs both files, tlsPorts names known ports", () => {
  expect(() => buildConfig({ overrides: { tlsCertFile: "c.pem" } })).toThrow(/both tlsCertFile/);
  expect(() => buildConfig({ overrides: { tlsPorts: "client,ftp" } })).toThrow(/'ftp'/);
  expect(() => buildConfig({ overrides: { clusterSecret: "short" } })).toThrow(/16 characters/);
  expect(() => buildConfig({ overrides: { maxConnections: "0" } })).toThrow(/between 1/);
  const system = buildConfig({}).system;
  expect([system.maxConnections, system.maxCommandLineBytes, system.frameTimeoutMs]).toEqual([
    10_000,
    4096,
    30_000,
  ]);
});

test("a token authenticates its own user only; wrong user and wrong token look alike", () => {
  const control = access();
  expect(control.enabled).toBe(true);
  expect(control.authenticate("alice", TOKEN)?.name).toBe("alice");
  expect(control.authenticate("alice", "ops-token-0123456789")).toBeUndefined();
  expect(control.authenticate("mallory", TOKEN)).toBeUndefined();
  expect(control.authenticate("ops", "ops-token-0123456789")?.admin).toBe(true);
  expect(control.authenticateToken(TOKEN)?.name).toBe("alice");
  expect(control.authenticateToken("nobody-has-this-token")).toBeUndefined();
  expect(new AccessControl([]).enabled).toBe(false);
});

test("permissions follow topic patterns; admin may do everything", () => {
  const alice = access().authenticate("alice", TOKEN)!;
  const ops = access().authenticate("ops", "ops-token-0123456789")!;
  const cases: [string, boolean][] = [
    ["put orders 0 1 0 1\r\nx", true],
    ["put logs-eu 0 1 0 1\r\nx", true],
    ["put payments 0 1 0 1\r\nx", false],
    ["get orders g 0 0 1024 1\r\n", true],
    ["get logs-eu g 0 0 1024 1\r\n", false],
    ["offset payments g 0 0 1\r\n", false],
    ["stats 1\r\n", true],
    ["stats reset 1\r\n", false],
    ["stats config 1\r\n", false],
    ["version 1\r\n", true],
    ["transaction TX:s:1 s BEGIN 1\r\n", true],
  ];
  for (const [line, allowed] of cases) {
    const requirement = requirementOf(parse(line));
    expect(refusal(alice, requirement) === undefined, line).toBe(allowed);
    expect(refusal(ops, requirement), line).toBeUndefined();
  }
  const extension = (verb: string, args: string[]) =>
    requirementOf({ kind: "extension", verb, args, opaque: 1, body: new Uint8Array(0) });
  expect(refusal(alice, extension("join", ["g", "m", "orders", "DEFAULT"]))).toBeUndefined();
  expect(refusal(alice, extension("join", ["g", "m", "orders,payments", "DEFAULT"]))).toContain(
    "payments",
  );
  expect(refusal(alice, extension("meta", ["logs-1"]))).toBeUndefined();
  expect(refusal(alice, extension("adjust", ["g", "orders", "*", "0", "safe"]))).toContain("admin");
  expect(refusal(alice, extension("cluster", ["status", "-"]))).toContain("admin");
  expect(refusal(alice, extension("heuristic", ["list", "-"]))).toContain("admin");
  expect(refusal(alice, extension("unknown", []))).toContain("admin");
  const delay = (topic: string) => extension("delay", [topic, "0", "1", "0", "-1", "+1000"]);
  expect(refusal(alice, delay("orders"))).toBeUndefined();
  expect(refusal(alice, delay("payments"))).toContain("payments");
  expect(refusal(alice, extension("delayed", ["cancel", "12"]))).toBeUndefined();
  expect(refusal(alice, extension("cron", ["list", "-", "0"]))).toBeUndefined();
  expect(refusal(alice, extension("cron", ["add", "x", "10"]))).toContain("admin");
  // A batch of puts is a put; a long poll is a get.
  expect(refusal(alice, extension("bput", ["orders", "0", "3", "90"]))).toBeUndefined();
  expect(refusal(alice, extension("bput", ["payments", "0", "3", "90"]))).toContain("payments");
  expect(refusal(alice, extension("fetch", ["orders", "g", "0", "0", "1024", "500"])))
    .toBeUndefined();
  expect(refusal(alice, extension("fetch", ["logs-eu", "g", "0", "0", "1024", "500"])))
    .toContain("logs-eu");
});

test("the gate answers 401 before auth, closes after the failure limit, and 403s what is not allowed", () => {
  const events: string[] = [];
  const gate = new Gate(access(), {
    onUnauthorized: ({ reason, closing }) => events.push(`401 ${reason} ${closing}`),
    onForbidden: ({ user }) => events.push(`403 ${user}`),
  }, 3);
  const put = parse("put orders 0 1 0 1\r\nx");
  const first = gate.check(put);
  expect(first).toMatchObject({ kind: "answer", reply: { code: 401 }, close: false });
  expect(gate.check(parse(`auth alice wrong-token-0000000000 2\r\n`))).toMatchObject({
    reply: { code: 401 },
    close: false,
  });
  expect(gate.check(parse(`auth alice ${TOKEN} 3\r\n`))).toMatchObject({
    reply: { code: 200, text: "alice" },
  });
  expect(gate.check(put)).toEqual({ kind: "pass" });
  expect(gate.check(parse("put payments 0 1 0 1\r\nx"))).toMatchObject({
    reply: { code: 403 },
    close: false,
  });
  expect(gate.check(parse("quit\r\n"))).toEqual({ kind: "pass" });
  const stranger = new Gate(access(), { onUnauthorized: () => {}, onForbidden: () => {} }, 3);
  const verdicts = [1, 2, 3].map(() => stranger.check(put));
  expect(verdicts.map((v) => v.kind === "answer" && v.close)).toEqual([false, false, true]);
  expect(events).toEqual([
    "401 send auth <user> <token> first false",
    "401 unknown user or wrong token false",
    "403 alice",
  ]);
  const open = new Gate(
    new AccessControl([]),
    { onUnauthorized: () => {}, onForbidden: () => {} },
    3,
  );
  expect(open.check(put)).toEqual({ kind: "pass" });
  expect(open.check(parse(`auth alice ${TOKEN} 4\r\n`))).toMatchObject({ reply: { code: 200 } });
});

test("HTTP routes need the permission the TCP command would need", () => {
  const need = (method: string, path: string) =>
    httpRequirement(method, new URL(`http://h${path}`)).kind;
  expect(need("GET", "/")).toBe("none");
  expect(need("GET", "/healthz")).toBe("none");
  expect(need("GET", "/metrics")).toBe("any");
  expect(need("GET", "/v1/overview")).toBe("any");
  expect(need("POST", "/v1/topics")).toBe("admin");
  expect(need("POST", "/v1/topics/orders/messages")).toBe("produce");
  expect(need("GET", "/v1/topics/orders/partitions/0/messages")).toBe("consume");
  expect(need("GET", "/v1/topics/orders/stream")).toBe("consume");
  expect(need("POST", "/v1/groups/g/reset")).toBe("admin");
  expect(need("GET", "/v1/stats/text/config")).toBe("admin");
  expect(need("GET", "/v1/stats/text/reset")).toBe("admin");
  expect(need("POST", "/put?topic=orders")).toBe("produce");
  expect(need("GET", "/get?topic=orders")).toBe("consume");
});

test("a self-signed certificate parses, names its hosts, and verifies with its own key", () => {
  const pair = selfSignedCertificate({ hosts: ["broker.example", "10.1.2.3", "::1"], days: 30 });
  const cert = new X509Certificate(pair.cert);
  expect(cert.subject).toContain("CN=broker.example");
  expect(cert.subjectAltName).toContain("DNS:broker.example");
  expect(cert.subjectAltName).toContain("IP Address:10.1.2.3");
  expect(cert.ca).toBe(true);
  expect(cert.verify(cert.publicKey)).toBe(true);
  expect(cert.checkHost("broker.example")).toBe("broker.example");
  const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
  expect(Math.round(days * 24)).toBe(30 * 24 + 1);
  expect(pair.key).toContain("BEGIN PRIVATE KEY");
});

test("peer proofs depend on the secret, both nonces and the direction", () => {
  const hello = { from: 1, to: 2, nonce: newNonce() };
  expect(decodeHello(encodeHello(hello))).toEqual(hello);
  expect(decodeHello("metaq-peer/1 1")).toBeUndefined();
  const listenerNonce = newNonce();
  const proof = peerProof("secret-secret-secret", "dial", hello, listenerNonce);
  expect(proofsEqual(proof, peerProof("secret-secret-secret", "dial", hello, listenerNonce)))
    .toBe(true);
  const others = [
    peerProof("another-secret-value", "dial", hello, listenerNonce),
    peerProof("secret-secret-secret", "accept", hello, listenerNonce),
    peerProof("secret-secret-secret", "dial", hello, newNonce()),
    peerProof("secret-secret-secret", "dial", { ...hello, from: 3 }, listenerNonce),
  ];
  for (const other of others) expect(proofsEqual(proof, other)).toBe(false);
  expect(proofsEqual(proof, "not hex")).toBe(false);
});
