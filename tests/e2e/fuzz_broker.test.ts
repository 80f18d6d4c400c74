/**
 * Fuzzing a live `dist/metaq`: many connections send random bytes and mutated valid frames
 * (flipped bits, cut frames, swapped and extreme tokens, lying lengths), bounded in count and
 * time and seeded (the seed is printed). Meanwhile a witness connection keeps producing and
 * reading. Afterwards the broker is still up, stops cleanly, every segment file is whole records
 * with valid checksums, every witnessed message is there, and a restart checking every segment
 * finds nothing to repair.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { metaqChecksum } from "../../lib/crc32.ts";
import { Prng } from "../../lib/prng.ts";
import { decodeRecords, RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { BrokerProcess } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const CASES_MAX = 400;
const TIME_MAX_MS = 20_000;
const PARALLEL = 4;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);

const encoder = new TextEncoder();

/** Valid frames of every kind, the raw material for mutations. */
function validFrames(random: Prng): string[] {
  const body = "x".repeat(random.int(0, 64));
  const checksum = metaqChecksum(encoder.encode(body));
  const opaque = random.int(-2147483648, 2147483647);
  return [
    `put fuzz ${random.int(0, 2)} ${body.length} 0 ${checksum} ${opaque}\r\n${body}`,
    `put fuzz 0 ${body.length} 1 ${opaque}\r\n${body}`,
    `get fuzz g ${random.int(0, 2)} ${random.int(0, 4096)} 65536 ${opaque}\r\n`,
    `offset fuzz g 0 0 ${opaque}\r\n`,
    `stats ${
      ["", "topics", "offsets", "realtime", "fuzz", "security"][random.int(0, 6)]
    } ${opaque}\r\n`,
    `version ${opaque}\r\n`,
    `transaction TX:s${opaque}:1 s BEGIN ${opaque}\r\n`,
    `put fuzz 0 ${body.length} 0 ${checksum} TX:s${opaque}:1 ${opaque}\r\n${body}`,
    `transaction TX:s${opaque}:1 s ROLLBACK ${opaque}\r\n`,
    `transaction XID:1:0a:0b:q s RECOVER ${opaque}\r\n`,
    `meta fuzz ${opaque}\r\n`,
    `join g m${opaque} fuzz DEFAULT ${opaque}\r\n`,
    `committed g fuzz 0 ${opaque}\r\n`,
    `result 200 0 ${opaque}\r\n`,
    `sync fuzz 0 ${body.length} 0 1 ${checksum} ${opaque}\r\n${body}`,
  ];
}

const EXTREMES = [
  "-1",
  "0",
  "2147483647",
  "-2147483648",
  "2147483648",
  "9223372036854775807",
  "99999999999999999999",
  "",
  " ",
  "NaN",
  "0x10",
  "..",
  "../../etc",
  "é",
  "\u0000",
  "a".repeat(300),
];

/** One fuzz input: random bytes, or valid frames changed in one of several ways. */
function fuzzInput(random: Prng): Uint8Array {
  const kind = random.int(0, 6);
  if (kind === 0) {
    const bytes = new Uint8Array(random.int(1, 2048));
    for (let i = 0; i < bytes.length; i++) bytes[i] = random.int(0, 256);
    return bytes;
  }
  const frames = validFrames(random);
  const picked = Array.from(
    { length: random.int(1, 6) },
    () => frames[random.int(0, frames.length)],
  );
  let text = picked.join("");
  if (kind === 1) { // swap a token for an extreme value
    const tokens = text.split(" ");
    tokens[random.int(0, tokens.length)] = EXTREMES[random.int(0, EXTREMES.length)];
    text = tokens.join(" ");
  } else if (kind === 2) { // cut the stream anywhere
    text = text.slice(0, random.int(0, text.length + 1));
  } else if (kind === 3) { // a long line, a lying length, or a line without its end
    text = [
      `stats ${"y".repeat(random.int(4000, 9000))} 1\r\n`,
      `put fuzz 0 ${random.int(2 ** 20, 2 ** 31 - 1)} 0 1\r\nshort`,
      `get fuzz g 0 0 ${random.int(1, 2 ** 31 - 1)} 1`,
    ][random.int(0, 3)] + text;
  }
  const bytes = encoder.encode(text);
  if (kind === 4 || kind === 5) { // flip bits
    for (let flips = random.int(1, 8); flips > 0 && bytes.length > 0; flips--) {
      bytes[random.int(0, bytes.length)] ^= 1 << random.int(0, 8);
    }
  }
  return bytes;
}

async function runCase(port: number, input: Uint8Array, random: Prng): Promise<void> {
  const socket = await RawSocket.connect(port);
  try {
    let at = 0;
    while (at < input.length) { // in random pieces, as a network would deliver them
      const end = Math.min(input.length, at + random.int(1, 512));
      socket.write(input.subarray(at, end));
      at = end;
    }
    await socket.read(1 << 20, random.int(0, 80)); // take some replies, or none
  } finally {
    socket.socket.destroy();
  }
}

test(`random and mutated frames never crash the broker, corrupt data or stop other clients (seed ${SEED})`, async () => {
  console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} replays it)`);
  await using temp = tempDir("metaq-fuzz-");
  const dataDir = path.join(temp.path, "data");
  const config = path.join(temp.path, "server.ini");
  fs.writeFileSync(config, "[system]\nnumPartitions=2\nframeTimeoutMs=3000\n[topic=*]\n");
  await using broker = await BrokerProcess.start({ dataDir, args: ["--config", config] });
  const random = new Prng(SEED);
  const witness = new MetaqClient({ brokers: [broker.address], reconnectAttemptsMax: 3 });
  const witnessed: { offset: number; payload: string }[] = [];
  const deadline = Date.now() + TIME_MAX_MS;
  let cases = 0;
  try {
    while (cases < CASES_MAX && Date.now() < deadline) {
      const batch = Array.from({ length: PARALLEL }, () => {
        const caseRandom = random.fork();
        return runCase(broker.port, fuzzInput(caseRandom), caseRandom).catch(() => {});
      });
      cases += PARALLEL;
      const payload = `witness-${cases}`;
      const put = witness.put("witness", 0, { payload: encoder.encode(payload) });
      await Promise.all(batch);
      witnessed.push({ offset: (await put).offset, payload });
      const reply = await witness.get({
        topic: "witness",
        group: "w",
        partition: 0,
        offset: witnessed[witnessed.length - 1].offset,
        maxSize: 4096,
      });
      expect(reply.kind).toBe("records");
    }
    expect(cases).toBeGreaterThanOrEqual(40);
    expect(await witness.version()).toContain("metaq");
  } finally {
    witness.close();
  }
  expect(broker.child?.exitCode).toBeNull(); // never crashed
  expect(await broker.kill("SIGTERM")).toEqual({ code: 0, signal: null });
  expect(broker.stderr).not.toContain("fatal");
  // Every partition's segments are whole records with valid checksums, nothing else.
  let partitions = 0;
  for (const name of fs.readdirSync(dataDir)) {
    const dir = path.join(dataDir, name);
    if (!/-\d+$/.test(name) || !fs.statSync(dir).isDirectory()) continue;
    partitions += 1;
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".meta")).sort()) {
      const bytes = fs.readFileSync(path.join(dir, file));
      const records = decodeRecords(bytes, 0, 64 * 1024 * 1024);
      const used = records.reduce((sum, r) => sum + RECORD_HEADER_BYTES + r.data.length, 0);
      expect(used, `${name}/${file}`).toBe(bytes.length);
    }
  }
  expect(partitions).toBeGreaterThanOrEqual(1);
  await broker.restart(); // checks every segment at start-up
  expect(broker.stderr).not.toContain("Partition refused");
  const again = new MetaqClient({ brokers: [broker.address], reconnectAttemptsMax: 3 });
  try {
    for (const { offset, payload } of witnessed) {
      const reply = await again.get({
        topic: "witness",
        group: "w",
        partition: 0,
        offset,
        maxSize: 4096,
      });
      expect(reply.kind).toBe("records");
      if (reply.kind !== "records") continue;
      expect(new TextDecoder().decode(decodeRecords(reply.bytes, offset)[0].data)).toBe(payload);
    }
  } finally {
    again.close();
  }
});
