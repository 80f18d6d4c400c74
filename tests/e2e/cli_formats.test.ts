/**
 * Input and output formats through `dist/metaq` against a broker child process: keys and
 * headers stored in MetaQ's attribute (and what a plain MetaQ client reads there), format
 * strings, delimiters on input and output, and a whole file as one message.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { crc32 } from "../../lib/crc32.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { BrokerProcess, runMetaq, startWithConfig } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";

const CONFIG = `[system]
numPartitions=3
[topic=keyed]
[topic=split]
numPartitions=1
[topic=files]
numPartitions=1
`;

let temp: TempDir;
let broker: BrokerProcess;
let address: string[];

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG);
  address = ["--broker", broker.address];
});

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

async function ok(args: string[], input?: string | Uint8Array) {
  const result = await runMetaq([...args, ...address], { input });
  if (result.code !== 0) throw new Error(`metaq ${args.join(" ")}: ${result.stderr}`);
  return result;
}

describe("keys and headers", () => {
  test("--key and -H are stored with the message, routed by key, and printed back", async () => {
    await ok([
      "produce",
      "keyed",
      "--message",
      "hello",
      "--key",
      "customer-7",
      "-H",
      "trace=42",
      "--header",
      "source=web app&co",
      "--attribute",
      "gold",
    ]);
    await ok(["produce", "keyed", "--key", "customer-7"], "second\n");
    const partition = crc32(new TextEncoder().encode("customer-7")) % 3;
    const json = (await ok(["consume", "keyed", "--format", "json"])).stdout.trim().split("\n")
      .map((line) => JSON.parse(line));
    expect(json).toHaveLength(2);
    expect(json[0]).toMatchObject({
      partition,
      key: "customer-7",
      headers: [{ key: "trace", value: "42" }, { key: "source", value: "web app&co" }],
      attribute: "gold",
      payload: "hello",
      flag: 1,
    });
    expect(json[1]).toMatchObject({ partition, key: "customer-7", headers: [], attribute: null });
    // What a plain MetaQ client reads: one attribute string in the documented form.
    const client = new MetaqClient({ brokers: [broker.address] });
    try {
      const reply = await client.get({
        topic: "keyed",
        group: "plain",
        partition,
        offset: 0,
        maxSize: 4096,
      });
      if (reply.kind !== "records") throw new Error(`no records: ${reply.kind}`);
      const [first] = decodeRecords(reply.bytes);
      const { attribute, payload } = splitAttribute(first.flag, first.data);
      expect(attribute).toBe("metaq1?k=customer-7&a=gold&h.trace=42&h.source=web+app%26co");
      expect(Buffer.from(payload).toString()).toBe("hello");
    } finally {
      client.close();
    }
  });

  test("-f prints each documented field", async () => {
    const result = await ok([
      "consume",
      "keyed",
      "--max",
      "1",
      "-f",
      "%t|%p|%o|%n|%k|%h|%a|%S|%s|%%\\t.",
    ]);
    const partition = crc32(new TextEncoder().encode("customer-7")) % 3;
    const attribute = "metaq1?k=customer-7&a=gold&h.trace=42&h.source=web+app%26co";
    const next = 20 + 4 + attribute.length + 5; // header, attribute block, payload
    expect(result.stdout).toBe(
      `keyed|${partition}|0|${next}|customer-7|trace=42,source=web app&co|gold|5|hello|%\t.\n`,
    );
  });

  test("a header without '=' and an unknown field are usage errors", async () => {
    const header = await runMetaq([
      "produce",
      "keyed",
      "-H",
      "trace",
      "--message",
      "x",
      ...address,
    ]);
    expect([header.code, header.stderr.trim()]).toEqual([
      2,
      "metaq produce: Cannot use -H trace: expected NAME=VALUE",
    ]);
    const field = await runMetaq(["consume", "keyed", "-f", "%t %q", ...address]);
    expect(field.code).toBe(2);
    expect(field.stderr).toContain("unknown field %q");
    const both = await runMetaq(["consume", "keyed", "-f", "%s", "--format", "json", ...address]);
    expect(both.code).toBe(2);
  });
});

describe("delimiters", () => {
  test("input split at --delimiter (one byte or several), output joined with it", async () => {
    await ok(["produce", "split", "--delimiter", "\\0"], "a b\0c\nd\0\0e\0");
    await ok(["produce", "split", "--delimiter", "||"], "x|y||z||");
    const payloads = (await ok(["consume", "split", "--format", "json"])).stdout.trim().split("\n")
      .map((line) => JSON.parse(line).payload);
    // An empty message between two delimiters is a message; the trailing delimiter ends one.
    expect(payloads).toEqual(["a b", "c\nd", "", "e", "x|y", "z"]);
    const joined = await ok(["consume", "split", "--delimiter", ";"]);
    expect(joined.stdout).toBe("a b;c\nd;;e;x|y;z;");
  });
});

describe("a whole file as one message", () => {
  test("--whole-file sends the bytes as they are, newlines and all", async () => {
    const bytes = new Uint8Array(5000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 256; // holds 10 and 13
    const file = path.join(temp.path, "blob.bin");
    fs.writeFileSync(file, bytes);
    const sent = await ok(["produce", "files", "--file", file, "--whole-file"]);
    expect(sent.stderr).toContain("Produced 1 messages");
    await ok(["produce", "files", "--whole-file"], bytes); // from stdin too
    const out = await ok(["consume", "files", "--delimiter", ""]);
    expect(Buffer.from(out.stdoutBytes).equals(Buffer.concat([bytes, bytes]))).toBe(true);
    const refused = await runMetaq([
      "produce",
      "files",
      "--whole-file",
      "--message",
      "x",
      ...address,
    ]);
    expect(refused.code).toBe(2);
  });
});
