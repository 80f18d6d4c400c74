import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import {
  type ConsumedMessage,
  Consumer,
  type ConsumerEvent,
  type ConsumerOptions,
} from "../../lib/client/consumer.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { decodeRecordChunks, decodeRecords } from "../../lib/protocol/record.ts";
import { silentLogger } from "../../lib/log.ts";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

let temp: TempDir;
let running: App;
let client: MetaqClient;
let producer: Producer;
const text = (message: ConsumedMessage) => new TextDecoder().decode(message.payload);

beforeAll(async () => {
  temp = tempDir();
  running = await assemble({
    config: buildConfig({
      fileText:
        `[system]\nnumPartitions=4\ndataPath=${temp.path}/data\ngroupSessionTimeoutMs=1500\n[topic=*]\n`,
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
  producer = new Producer(client);
});

afterAll(async () => {
  client.close();
  await running.close();
  temp[Symbol.dispose]();
});

/** Test defaults: short delays so the loops move fast, local files under the temp dir. */
function consumer(options: Partial<ConsumerOptions> & { group: string }, own = client): Consumer {
  return new Consumer(own, {
    maxDelayFetchMs: 100,
    commitOffsetPeriodMs: 100,
    heartbeatIntervalMs: 50,
    recoverDir: path.join(temp.path, "recover"),
    offsetDir: path.join(temp.path, "offsets"),
    ...options,
  });
}

async function produce(topic: string, count: number, prefix = topic): Promise<string[]> {
  const sent = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  await Promise.all(sent.map((value) => producer.send(topic, value)));
  return sent;
}

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The payloads of a partition in the order its segment files on disk hold them. */
function readOrder(topic: string, partition: number): string[] {
  const dir = path.join(temp.path, "data", `${topic}-${partition}`);
  const segments = fs.readdirSync(dir).filter((name) => name.endsWith(".meta")).sort();
  const bytes = Buffer.concat(segments.map((name) => fs.readFileSync(path.join(dir, name))));
  return decodeRecords(bytes).map((record) => decode(record.data));
}

/** Records who read each partition when: [start, stop) intervals per consumer. */
function ownershipLog() {
  const intervals: { who: string; key: string; from: number; to: number }[] = [];
  const open = new Map<string, number>();
  const listen = (who: string) => (event: ConsumerEvent) => {
    if (event.kind === "fenced") return;
    const key = `${event.topic}-${event.partition}`;
    if (event.kind === "started") open.set(`${who}/${key}`, performance.now());
    else {
      intervals.push({ who, key, from: open.get(`${who}/${key}`)!, to: performance.now() });
      open.delete(`${who}/${key}`);
    }
  };
  const overlaps = () => {
    const found: string[] = [];
    for (const a of intervals) {
      for (const b of intervals) {
        if (a.who < b.who && a.key === b.key && a.from < b.to && b.from < a.to) {
          found.push(`${a.key}: ${a.who} and ${b.who}`);
        }
      }
    }
    return found;
  };
  return { listen, overlaps, intervals };
}

describe("consumer groups", () => {
  test("two members split the partitions; together they read every message once", async () => {
    const sent = await produce("split", 400);
    const seen: Record<string, string[]> = { a: [], b: [] };
    const log = ownershipLog();
    const a = consumer({ group: "g-split", consumerId: "a", onEvent: log.listen("a") })
      .subscribe("split", (m) => void seen.a.push(text(m)));
    const b = consumer({ group: "g-split", consumerId: "b", onEvent: log.listen("b") })
      .subscribe("split", (m) => void seen.b.push(text(m)));
    await a.start();
    await b.start();
    await waitFor(
      "both members to hold two partitions",
      () => a.partitions.length === 2 && b.partitions.length === 2,
    );
    await waitFor("every message", () => seen.a.length + seen.b.length >= sent.length);
    await a.close();
    await b.close();
    expect([...seen.a, ...seen.b].sort()).toEqual([...sent].sort());
    expect(log.overlaps()).toEqual([]);
    const [report] = await new GroupClient(client).describe("g-split");
    expect(report.members).toEqual([]);
    expect(report.partitions.every((p) => p.committed === p.end && p.lag === 0)).toBe(true);
  });

  test("a member joining while another takes its first assignment is a rebalance, not an error", async () => {
    const sent = await produce("race", 200);
    const seen: string[] = [];
    const groups = new GroupClient(client);
    let joined: Promise<unknown> | undefined;
    // "x" joins while A applies its first assignment, before A commits its start positions and
    // acknowledges: A's first commit meets a newer generation (the consume CLI died of this).
    const a = consumer({
      group: "g-race",
      consumerId: "a",
      onEvent: (event) => {
        if (event.kind !== "started") return;
        joined ??= groups.join({
          group: "g-race",
          memberId: "x",
          topics: ["race"],
          strategy: "DEFAULT",
        });
      },
    }).subscribe("race", (m) => void seen.push(text(m)));
    await a.start();
    await joined;
    await waitFor("A to hold the two partitions x leaves it", () => a.partitions.length === 2);
    await groups.leave({ group: "g-race", memberId: "x" });
    await waitFor("A to hold every partition", () => a.partitions.length === 4);
    await waitFor("every message", () => seen.length >= sent.length);
    await a.close();
    expect(seen.sort()).toEqual([...sent].sort());
  });

  test("a consumer that comes back resumes after what was committed", async () => {
    const first = await produce("resume", 50);
    const seen: string[] = [];
    const c1 = consumer({ group: "g-resume" }).subscribe("resume", (m) => void seen.push(text(m)));
    await c1.start();
    await waitFor("the first batch", () => seen.length >= first.length);
    await c1.close();
    const second = await produce("resume", 30, "later");
    const c2 = consumer({ group: "g-resume" }).subscribe("resume", (m) => void seen.push(text(m)));
    await c2.start();
    await waitFor("the second batch", () => seen.length >= first.length + second.length);
    await c2.close();
    expect(seen.sort()).toEqual([...first, ...second].sort());
  });

  test("start latest skips what is already there; an explicit offset starts there", async () => {
    await produce("positions", 8);
    const latest: string[] = [];
    const c = consumer({ group: "g-latest", start: "latest" })
      .subscribe("positions", (m) => void latest.push(text(m)));
    await c.start();
    // Once each partition's end is known it is committed: then the start position is fixed.
    await waitFor("the end of every partition to be committed", async () => {
      const [report] = await new GroupClient(client).describe("g-latest");
      return report.partitions.length === 4 && report.partitions.every((p) => p.committed !== null);
    });
    const fresh = await produce("positions", 4, "fresh");
    await waitFor("the fresh messages", () => latest.length >= fresh.length);
    await c.close();
    expect(latest.sort()).toEqual(fresh.sort());

    for (const value of ["p0-a", "p0-b", "p0-c"]) {
      await producer.send("positioned", value, { partition: 0 });
    }
    const explicit: string[] = [];
    const e = consumer({ group: "g-explicit", start: { offset: 24 } })
      .subscribe("positioned", (m) => void explicit.push(text(m)));
    await e.start();
    await waitFor("the messages after offset 24", () => explicit.length >= 2);
    await e.close();
    expect(explicit).toEqual(["p0-b", "p0-c"]);
  });

  test("a joining member takes over partitions without two members reading one at once", async () => {
    const sent = await produce("handover", 2000);
    const seen = new Map<string, number>();
    const log = ownershipLog();
    const handler = (m: ConsumedMessage) => void seen.set(text(m), (seen.get(text(m)) ?? 0) + 1);
    const members = ["m1", "m2", "m3"].map((id) =>
      consumer({ group: "g-handover", consumerId: id, maxSize: 512, onEvent: log.listen(id) })
        .subscribe("handover", handler)
    );
    await members[0].start();
    await waitFor("some progress", () => seen.size > 100);
    await members[1].start();
    await members[2].start();
    await waitFor("every message", () => seen.size >= sent.length);
    for (const member of members) await member.close();
    expect([...seen.keys()].sort()).toEqual([...sent].sort());
    expect([...seen.values()].filter((count) => count > 1)).toEqual([]);
    expect(log.overlaps()).toEqual([]);
  });

  test("a member whose session is lost stops, and the others resume from its commits", async () => {
    const sent = await produce("takeover", 300);
    const seen = new Set<string>();
    const lostClient = new MetaqClient({
      brokers: [`127.0.0.1:${running.port}`],
      reconnectAttemptsMax: 1,
    });
    const lost = consumer({ group: "g-takeover", consumerId: "lost" }, lostClient)
      .subscribe("takeover", (m) => void seen.add(text(m)));
    const stays = consumer({ group: "g-takeover", consumerId: "stays" })
      .subscribe("takeover", (m) => void seen.add(text(m)));
    await lost.start();
    await stays.start();
    await waitFor(
      "both members to hold partitions",
      () => lost.partitions.length === 2 && stays.partitions.length === 2,
    );
    lostClient.close(); // as if the process died: no leave, no more heartbeats
    await waitFor("the survivor to own every partition", () => stays.partitions.length === 4, {
      timeoutMs: 10_000,
    });
    await waitFor("the lost member to fence itself", () => lost.partitions.length === 0);
    await waitFor("every message", () => seen.size >= sent.length);
    await stays.close();
    await lost.close();
    expect(lost.counters.fenced).toBeGreaterThanOrEqual(1);
  });
});

describe("broadcast", () => {
  test("every broadcast consumer receives every message and keeps its offsets locally", async () => {
    const sent = await produce("news", 40);
    const seen: Record<string, string[]> = { one: [], two: [] };
    const make = (instance: string) =>
      consumer({ group: "readers", mode: "broadcast", instance })
        .subscribe("news", (m) => void seen[instance].push(text(m)));
    const one = make("one");
    const two = make("two");
    await one.start();
    await two.start();
    await waitFor(
      "both to read everything",
      () => seen.one.length >= sent.length && seen.two.length >= sent.length,
    );
    await one.close();
    await two.close();
    expect(seen.one.sort()).toEqual([...sent].sort());
    expect(seen.two.sort()).toEqual([...sent].sort());
    const offsetsFile = path.join(temp.path, "offsets", "readers@one", "offsets.records");
    expect(fs.statSync(offsetsFile).size).toBeGreaterThan(0);
    // Restarted, it goes on from its own offsets: nothing is delivered twice.
    const more = await produce("news", 5, "more");
    const again = make("one");
    seen.one.length = 0;
    await again.start();
    await waitFor("the new messages", () => seen.one.length >= more.length);
    await again.close();
    expect(seen.one.sort()).toEqual(more.sort());
  });

  test("two processes cannot share one broadcast instance's offsets", async () => {
    const fileStore = consumer({ group: "readers", mode: "broadcast", instance: "shared" })
      .subscribe("news", () => {});
    await fileStore.start();
    // A lock held by another live process is refused; our own pid may reopen, so fake another.
    const lock = path.join(temp.path, "offsets", "readers@shared", "offsets.records.lock");
    await fileStore.close();
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, `${process.ppid}\n`);
    const second = consumer({ group: "readers", mode: "broadcast", instance: "shared" })
      .subscribe("news", () => {});
    await expect(second.start()).rejects.toThrow(/in use by process/);
    await second.close();
    fs.rmSync(lock);
  });
});

describe("failed consumption", () => {
  test("a message that keeps failing goes to the recovery store, the rest flow, and it is re-delivered once the handler succeeds", async () => {
    const sent = await produce("poison", 20);
    const poison = "poison-7";
    let healthy = false;
    const delivered: string[] = [];
    let poisonAttempts = 0;
    const c = consumer({ group: "g-poison", maxFetchRetries: 3, recoverIntervalMs: 300 })
      .subscribe("poison", (m) => {
        if (text(m) === poison && !healthy) {
          poisonAttempts += 1;
          throw new Error("cannot handle this one");
        }
        delivered.push(text(m));
      });
    await c.start();
    await waitFor("the others to flow", () => delivered.length >= sent.length - 1);
    expect(delivered).not.toContain(poison);
    expect(poisonAttempts).toBe(3 + c.counters.recoverFailures);
    expect(c.counters.recoverStored).toBe(1);
    healthy = true;
    await waitFor("the re-delivery", () => c.counters.recovered === 1);
    await c.close();
    expect(delivered.filter((value) => value === poison)).toEqual([poison]);
    expect(delivered.sort()).toEqual([...sent].sort());
  });

  test("with the dlq policy the message goes to <topic>.DLQ with its attribute", async () => {
    await producer.send("orders-x", "bad", { partition: 0, attribute: "k=v" });
    await producer.send("orders-x", "good", { partition: 0 });
    const delivered: string[] = [];
    const c = consumer({ group: "g-dlq", maxFetchRetries: 2, rejection: "dlq" })
      .subscribe("orders-x", (m) => {
        if (text(m) === "bad") throw new Error("no");
        delivered.push(text(m));
      });
    await c.start();
    await waitFor("the good message", () => delivered.includes("good"));
    await c.close();
    expect(c.counters.deadLettered).toBe(1);
    const dead: ConsumedMessage[] = [];
    const reader = consumer({ group: "g-dlq-reader" }).subscribe(
      "orders-x.DLQ",
      (m) => void dead.push(m),
    );
    await reader.start();
    await waitFor("the dead letter", () => dead.length === 1);
    await reader.close();
    expect([text(dead[0]), dead[0].attribute]).toEqual(["bad", "k=v"]);
  });

  test("with the drop policy the message is counted and skipped", async () => {
    await producer.send("dropping", "x", { partition: 1 });
    await producer.send("dropping", "y", { partition: 1 });
    const delivered: string[] = [];
    const c = consumer({ group: "g-drop", maxFetchRetries: 1, rejection: "drop" })
      .subscribe("dropping", (m) => {
        if (text(m) === "x") throw new Error("no");
        delivered.push(text(m));
      });
    await c.start();
    await waitFor("y", () => delivered.includes("y"));
    await c.close();
    expect([c.counters.dropped, c.counters.failedDeliveries]).toEqual([1, 1]);
  });
});

describe("delivery details", () => {
  test("manual ack: a rollback redelivers from the last ack", async () => {
    for (const value of ["m1", "m2", "m3", "m4"]) {
      await producer.send("manual", value, { partition: 0 });
    }
    const seen: string[] = [];
    let rolledBack = false;
    const c = consumer({ group: "g-manual", idCache: false }).subscribe("manual", (m) => {
      seen.push(text(m));
      if (text(m) === "m2") m.ack();
      if (text(m) === "m3" && !rolledBack) {
        rolledBack = true;
        m.rollback();
      }
      if (text(m) === "m4") m.ack();
    }, { autoAck: false });
    await c.start();
    await waitFor("m4", () => seen.includes("m4"));
    await c.close();
    expect(seen).toEqual(["m1", "m2", "m3", "m3", "m4"]);
  });

  test("a record larger than maxSize is fetched by growing maxSize", async () => {
    const big = "x".repeat(100_000);
    await producer.send("big", big, { partition: 2 });
    const seen: number[] = [];
    const c = consumer({ group: "g-big", maxSize: 1024 }).subscribe(
      "big",
      (m) => void seen.push(m.payload.length),
    );
    await c.start();
    await waitFor("the big record", () => seen.length === 1);
    await c.close();
    expect(seen).toEqual([100_000]);
  });

  test("1 MiB gets that arrive in many socket reads deliver every message whole and in order", async () => {
    // 1,000-byte messages: about one in 64 straddles two of the socket's reads of a reply.
    const sent = Array.from(
      { length: 3000 },
      (_, i) => `wide-${i}-`.padEnd(1000, String.fromCharCode(97 + (i % 26))),
    );
    for (let from = 0; from < sent.length; from += 500) {
      await Promise.all(
        sent.slice(from, from + 500).map((value) => producer.send("wide", value, { partition: 1 })),
      );
    }
    const ordered = await readOrder("wide", 1);
    // The premise: one reply came in pieces, and the pieces hold the records the broker wrote.
    const reply = await client.get({
      topic: "wide",
      group: "g-wide",
      partition: 1,
      offset: 0,
      maxSize: 1024 * 1024,
    });
    if (reply.kind !== "records") throw new Error(`expected records, got ${reply.kind}`);
    expect(reply.chunks.length).toBeGreaterThan(1);
    const first = decodeRecordChunks(reply.chunks).map((record) => decode(record.data));
    expect(first.length).toBeGreaterThan(900);
    expect(first).toEqual(ordered.slice(0, first.length));

    const seen: string[] = [];
    const c = consumer({ group: "g-wide" }).subscribe("wide", (m) => void seen.push(text(m)));
    await c.start();
    await waitFor("every wide message", () => seen.length >= sent.length);
    await c.close();
    expect(seen).toEqual(ordered);
    expect(new Set(seen)).toEqual(new Set(sent));
  });

  test("a client-side filter skips messages and still moves the offset", async () => {
    await producer.send("filtered", "keep me", { partition: 0, attribute: "vip" });
    await producer.send("filtered", "skip me", { partition: 0, attribute: "basic" });
    const seen: string[] = [];
    const c = consumer({ group: "g-filter" })
      .subscribe("filtered", (m) => void seen.push(text(m)), { filter: "attribute=vip" });
    await c.start();
    await waitFor("both examined", () => c.counters.filtered === 1 && seen.length === 1);
    await c.close();
    expect(seen).toEqual(["keep me"]);
    expect(await new GroupClient(client).committed("g-filter", "filtered", 0)).toBe(
      20 + 4 + 3 + 7 + (20 + 4 + 5 + 7),
    );
  });

  test("the message-id cache hides duplicates after a forced rewind", async () => {
    const sent = await produce("rewind", 12);
    const seen: string[] = [];
    const c = consumer({ group: "g-rewind" }).subscribe("rewind", (m) => void seen.push(text(m)));
    await c.start();
    await waitFor("everything once", () => seen.length >= sent.length);
    await waitFor(
      "the commits",
      async () =>
        (await new GroupClient(client).describe("g-rewind"))[0].partitions.every((p) =>
          p.lag === 0
        ),
    );
    await new GroupClient(client).reset({
      group: "g-rewind",
      topic: "rewind",
      to: "earliest",
      force: true,
    });
    await waitFor(
      "the rewound records to be skipped",
      () => c.counters.duplicatesSkipped >= sent.length,
    );
    await c.close();
    expect(seen.sort()).toEqual([...sent].sort());
  });
});
