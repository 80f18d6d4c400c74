/**
 * Authentication and TLS through the compiled binary: `[user=...]` sections in the config file,
 * the `auth` command and MetaQ's 401/403 framing on the client port, bearer tokens on HTTP, the
 * CLI's --user/--token/--ca, `metaq cert`, TLS on the client and HTTP ports, and the counters
 * and logs a refusal leaves (never the token).
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import * as tls from "node:tls";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const ALICE = "alice-token-4f9a8b7c6d5e";
const OPS = "ops-token-0a1b2c3d4e5f6a7b";
const WRONG = "wrong-token-99999999999";

function writeConfig(dir: string, system = ""): string {
  const file = path.join(dir, "server.ini");
  fs.writeFileSync(
    file,
    `[system]\nnumPartitions=1\n${system}\n[topic=*]\n` +
      `[user=alice]\ntoken=${ALICE}\nproduce=orders\nconsume=orders\n` +
      `[user=ops]\ntoken=${OPS}\nadmin=true\n`,
  );
  return file;
}

const put = (topic: string, opaque: number) => `put ${topic} 0 5 0 907060870 ${opaque}\r\nhello`;

test("on the client port a user must authenticate first, within its permissions", async () => {
  await using temp = tempDir("metaq-auth-");
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "data"),
    args: ["--config", writeConfig(temp.path)],
  });
  // Before auth: MetaQ's 401 for anything, and the third failure closes the connection.
  {
    using socket = await RawSocket.connect(broker.port);
    socket.write(put("orders", 1));
    expect((await socket.readFrame()).header).toMatch(/^result 401 \d+ 1$/);
    socket.write(`auth alice ${WRONG} 2\r\n`);
    const refused = await socket.readFrame();
    expect(refused.header).toMatch(/^result 401 \d+ 2$/);
    expect(refused.body.toString()).toBe("Cannot authenticate: unknown user or wrong token");
    socket.write("version 3\r\n");
    expect((await socket.readFrame()).header).toMatch(/^result 401 \d+ 3$/);
    expect(await socket.waitClosed()).toBe(true);
  }
  // After auth: allowed commands run, others get 403 in MetaQ's reply framing.
  {
    using socket = await RawSocket.connect(broker.port);
    socket.write(`auth alice ${ALICE} 10\r\n`);
    expect((await socket.readFrame()).header).toBe("result 200 5 10");
    socket.write(put("orders", 11));
    const stored = await socket.readFrame();
    expect(stored.header).toMatch(/^result 200 \d+ 11$/);
    socket.write(put("payments", 12));
    const denied = await socket.readFrame();
    expect(denied.header).toMatch(/^result 403 \d+ 12$/);
    expect(denied.body.toString()).toBe(
      "Cannot allow this operation: user 'alice' may not produce topic 'payments'",
    );
    for (const [line, opaque] of [["stats reset", 13], ["stats config", 14]] as const) {
      socket.write(`${line} ${opaque}\r\n`);
      expect((await socket.readFrame()).header).toMatch(new RegExp(`^result 403 \\d+ ${opaque}$`));
    }
    socket.write("get orders g 0 0 1024 15\r\n");
    expect((await socket.readFrame()).header).toMatch(/^value 25 15$/);
    expect(socket.closed).toBe(false);
  }
  // The CLI authenticates with flags or the environment; wrong or missing tokens fail clearly.
  const address = ["--broker", broker.address];
  const sent = await runMetaq([
    "produce",
    "orders",
    ...address,
    "--user",
    "alice",
    "--token",
    ALICE,
  ], {
    input: "one\ntwo\n",
  });
  expect(sent.code).toBe(0);
  const anonymous = await runMetaq(["produce", "orders", ...address], { input: "x\n" });
  expect(anonymous.code).not.toBe(0);
  expect(anonymous.stderr).toContain("Cannot authenticate");
  const wrong = await runMetaq(["stats", ...address], {
    env: { METAQ_USER: "alice", METAQ_TOKEN: WRONG },
  });
  expect(wrong.code).not.toBe(0);
  expect(wrong.stderr).toContain("unknown user or wrong token");
  const consumed = await runMetaq(["consume", "orders", "--from-beginning", ...address], {
    env: { METAQ_USER: "alice", METAQ_TOKEN: ALICE },
  });
  expect(consumed.stdout.split("\n").filter(Boolean)).toEqual(["hello", "one", "two"]);
  const reset = await runMetaq(["stats", "reset", ...address, "--user", "alice", "--token", ALICE]);
  expect(reset.stderr).toContain("needs admin");
  const security = await runMetaq(["stats", "security", ...address], {
    env: { METAQ_USER: "ops", METAQ_TOKEN: OPS },
  });
  expect(security.code).toBe(0);
  const counters = Object.fromEntries(
    security.stdout.split("\n").filter((l) => l.includes(" ")).map((l) => l.split(" ")),
  );
  expect(Number(counters.auth_failures)).toBeGreaterThanOrEqual(5);
  expect(Number(counters.auth_denied)).toBeGreaterThanOrEqual(4);
  // Refusals are logged, tokens never.
  const log = broker.stdout + broker.stderr;
  expect(log).toContain("not authenticated");
  expect(log).toContain("not permitted");
  for (const token of [ALICE, OPS, WRONG]) expect(log).not.toContain(token);
});

test("on the HTTP port a bearer token is needed for everything but the page and the probes", async () => {
  await using temp = tempDir("metaq-auth-http-");
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "data"),
    args: ["--config", writeConfig(temp.path)],
    http: true,
  });
  const call = (route: string, token?: string, init: RequestInit = {}) =>
    fetch(`${broker.httpBase}${route}`, {
      ...init,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
  expect((await call("/")).status).toBe(200);
  expect((await call("/healthz")).status).toBe(200);
  const anonymous = await call("/v1/overview");
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers.get("www-authenticate")).toContain("Bearer");
  expect((await anonymous.json()).error.kind).toBe("unauthorized");
  expect((await call("/v1/overview", WRONG)).status).toBe(401);
  expect((await call("/v1/overview", ALICE)).status).toBe(200);
  const body = JSON.stringify({ messages: [{ payload: "via http" }] });
  const produced = await call("/v1/topics/orders/messages", ALICE, { method: "POST", body });
  expect(produced.status).toBe(200);
  const denied = await call("/v1/topics/payments/messages", ALICE, { method: "POST", body });
  expect(denied.status).toBe(403);
  expect((await denied.json()).error).toEqual({
    kind: "forbidden",
    message: "Cannot allow this operation: user 'alice' may not produce topic 'payments'",
  });
  const create = { method: "POST", body: '{"name":"audit"}' };
  expect((await call("/v1/topics", ALICE, create)).status).toBe(403);
  expect((await call("/v1/topics", OPS, create)).status).toBe(201);
  expect((await call("/v1/stats/text/config", ALICE)).status).toBe(403);
  // Who a token names, so the dashboard shows its admin forms to admins only.
  expect((await call("/v1/whoami")).status).toBe(401);
  expect(await (await call("/v1/whoami", ALICE)).json())
    .toEqual({ user: "alice", admin: false, authentication: true });
  expect(await (await call("/v1/whoami", OPS)).json())
    .toEqual({ user: "ops", admin: true, authentication: true });
  const metrics = await (await call("/metrics", OPS)).text();
  expect(metrics).toMatch(/^metaq_auth_failures_total [2-9]\d*$/m);
  expect(metrics).toMatch(/^metaq_auth_denied_total [2-9]\d*$/m);
  expect(broker.stdout + broker.stderr).not.toContain(WRONG);
});

test("with a certificate the client and HTTP ports speak TLS only, and the CLI trusts a given CA", async () => {
  await using temp = tempDir("metaq-tls-");
  const tlsDir = path.join(temp.path, "tls");
  const made = await runMetaq([
    "cert",
    "--out",
    tlsDir,
    "--host",
    "localhost",
    "--host",
    "127.0.0.1",
  ]);
  expect(made.code).toBe(0);
  const ca = path.join(tlsDir, "cert.pem");
  expect(fs.statSync(path.join(tlsDir, "key.pem")).mode & 0o077).toBe(0);
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "data"),
    args: [
      "--config",
      writeConfig(temp.path),
      "--tls-cert",
      ca,
      "--tls-key",
      path.join(tlsDir, "key.pem"),
    ],
    http: true,
  });
  const secure = ["--broker", broker.address, "--ca", ca, "--user", "alice", "--token", ALICE];
  expect((await runMetaq(["produce", "orders", ...secure], { input: "secret\n" })).code).toBe(0);
  const consumed = await runMetaq(["consume", "orders", "--from-beginning", ...secure]);
  expect(consumed.stdout).toBe("secret\n");
  // Without the CA the certificate is not trusted; in plain TCP the broker answers nothing.
  const untrusted = await runMetaq(["version", "--broker", broker.address, "--tls"]);
  expect(untrusted.code).not.toBe(0);
  expect(untrusted.stderr).toMatch(/certificate/i);
  {
    using socket = await RawSocket.connect(broker.port);
    socket.write("version 1\r\n");
    expect((await socket.read(6, 3000)).toString()).not.toBe("result");
    expect(await socket.waitClosed(5000)).toBe(true);
  }
  // A raw TLS connection shows the certificate and speaks MetaQ's protocol inside.
  const session = await new Promise<{ subject: string; reply: string }>((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: broker.port, ca: fs.readFileSync(ca) });
    socket.once("secureConnect", () => socket.write(`auth alice ${ALICE} 7\r\n`));
    socket.once("data", (data) => {
      resolve({ subject: socket.getPeerCertificate().subject.CN, reply: String(data) });
      socket.destroy();
    });
    socket.once("error", reject);
  });
  expect(session).toEqual({ subject: "localhost", reply: "result 200 5 7\r\nalice" });
  // HTTPS on the HTTP port.
  const status = await new Promise<number>((resolve, reject) => {
    https.get(
      `https://127.0.0.1:${broker.httpPort}/v1/overview`,
      { ca: fs.readFileSync(ca), headers: { authorization: `Bearer ${ALICE}` } },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    ).once("error", reject);
  });
  expect(status).toBe(200);
  await expect(fetch(`http://127.0.0.1:${broker.httpPort}/healthz`)).rejects.toThrow();
});
