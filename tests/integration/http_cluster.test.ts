/**
 * The HTTP API on a three-node Raft-lite cluster, assembled in this process on 127.0.0.1: every
 * read answers the same from any node. With one copy per partition, each partition is held by
 * one node and read through the edge on the other two, so fetch, the live stream, MetaQ's
 * `/get`, consumer groups and lag, the overview and `/metrics` are each checked on all three.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { App } from "../../lib/app/assemble.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "../../lib/http/wire_reply.ts";
import { type InProcessCluster, startCluster } from "../support/cluster_in_process.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const NODES = [1, 2, 3];
const TOPIC = "orders";
const PARTITIONS = 3;
const PER_PARTITION = 5;

const CONFIG = `
[system]
numPartitions=2
[topic=${TOPIC}]
numPartitions=${PARTITIONS}
[topic=events]
[topic=clicks]
[topic=payments]
`;

/** Topics whose partitions are held by node 1, 2 and 3 respectively (placement.ts). */
const SPREAD = ["clicks", "payments", TOPIC];

let temp: TempDir;
let cluster: InProcessCluster;
let nodes: App[] = [];

beforeAll(async () => {
  temp = tempDir();
  cluster = await startCluster({
    dataPath: temp.path,
    configText: CONFIG,
    overrides: { replicas: "1" },
    http: true,
  });
  nodes = cluster.nodes;
  await waitFor("every node to be ready", async () => {
    const answers = await Promise.all(nodes.map((node) => call(node, "/readyz")));
    return answers.every((answer) => answer.status === 200);
  });
  // Each node opens the partitions it holds; then every node learns who leads them.
  for (const node of nodes) {
    for (const topic of SPREAD) {
      expect((await post(node, "/v1/topics", { name: topic })).status).toBeLessThan(300);
    }
  }
  await waitFor(
    "every node to know every partition's leader",
    () =>
      nodes.every((node) =>
        SPREAD.every((topic) =>
          Array.from(
            { length: node.broker.topicSettings(topic)!.numPartitions },
            (_, p) => node.cluster!.leaderOf(`${topic}-${p}`),
          ).every((leader) => leader !== undefined)
        )
      ),
  );
}, 30_000);

afterAll(async () => {
  await cluster?.close();
  temp?.[Symbol.dispose]();
});

/** A request to a node's HTTP port; the body as JSON when it is JSON, else as text. */
async function call(node: App, path: string, init?: RequestInit) {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}${path}`, init);
  const text = await response.text();
  const type = response.headers.get("content-type") ?? "";
  // deno-lint-ignore no-explicit-any
  const body: any = type.startsWith("application/json") ? JSON.parse(text) : text;
  return { status: response.status, body };
}

function post(node: App, path: string, body: unknown) {
  return call(node, path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Answers of every node to the same request. */
function onEveryNode(path: string) {
  return Promise.all(nodes.map((node) => call(node, path)));
}

/** The node holding `partition` of the topic (one copy each). */
function holderOf(partition: number): App {
  const holders = nodes.filter((node) => node.cluster!.hosts(TOPIC, partition));
  expect(holders.length).toBe(1);
  return holders[0];
}

/** A group wire command through a node's edge, as a client connected there sends it. */
async function groupCommand(node: App, verb: string, args: string[]): Promise<string> {
  const answer = await ask(
    (command, respond) => node.edge.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
    { kind: "extension", verb, args, opaque: 0, body: new Uint8Array(0) },
  );
  if (answer.kind !== "result" || answer.code !== 200) {
    throw new Error(`${verb} failed: ${JSON.stringify(answer)}`);
  }
  return answer.text;
}

/** Reads SSE message events until `count` arrived (bounded by reads and time). */
async function readEvents(node: App, path: string, count: number, headers = {}) {
  const controller = new AbortController();
  const response = await fetch(`http://127.0.0.1:${node.httpPort}${path}`, {
    headers,
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: { id: string; data: Record<string, unknown> }[] = [];
  let buffer = "";
  const deadline = Date.now() + 10_000;
  try {
    for (let reads = 0; reads < 500 && events.length < count && Date.now() < deadline; reads++) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop()!;
      for (const block of blocks) {
        const fields = Object.fromEntries(
          block.split("\n").filter((line) => !line.startsWith(":")).map((line) => {
            const colon = line.indexOf(": ");
            return [line.slice(0, colon), line.slice(colon + 2)];
          }),
        );
        if (fields.event === "message") {
          events.push({ id: fields.id, data: JSON.parse(fields.data) });
        }
      }
    }
  } finally {
    controller.abort();
    await reader.cancel().catch(() => {});
  }
  return events;
}

const payloadsOf = (events: { data: Record<string, unknown> }[]) =>
  events.map((event) => `${event.data.partition}:${event.data.payload}`).sort();

describe("reads answer the same on every node", () => {
  test("every partition has one holder, and the other two nodes read it through the edge", () => {
    for (let partition = 0; partition < PARTITIONS; partition++) holderOf(partition);
    SPREAD.forEach((topic, index) => {
      expect(nodes.map((node) => node.cluster!.hosts(topic, 0))).toEqual(
        NODES.map((_, other) => other === index),
      );
    });
  });

  test("a first put through a node that does not hold the partition reaches its holder", async () => {
    const partition = 0;
    const other = nodes.find((node) => !node.cluster!.hosts("events", partition))!;
    const answer = await post(other, "/v1/topics/events/messages", {
      messages: [{ payload: "first", partition }],
    });
    expect(answer.status).toBe(200);
  });

  test("messages produced through one node fetch the same from every node", async () => {
    const messages = [];
    for (let partition = 0; partition < PARTITIONS; partition++) {
      for (let index = 0; index < PER_PARTITION; index++) {
        messages.push({ payload: `p${partition}-m${index}`, partition });
      }
    }
    const produced = await post(nodes[0], `/v1/topics/${TOPIC}/messages`, { messages });
    expect(produced.status).toBe(200);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const path = `/v1/topics/${TOPIC}/partitions/${partition}/messages`;
      const answers = await onEveryNode(path);
      for (const answer of answers) expect(answer).toEqual(answers[0]);
      expect(answers[0].status).toBe(200);
      expect(answers[0].body.messages.map((m: { payload: string }) => m.payload)).toEqual(
        Array.from({ length: PER_PARTITION }, (_, index) => `p${partition}-m${index}`),
      );
      const end = answers[0].body.endOffset;
      expect(answers[0].body).toMatchObject({ startOffset: 0, nextOffset: end });
      expect(end).toBe(holderOf(partition).logs.get(TOPIC, partition)!.endOffset);
    }
  });

  test("paging, the end and past the end answer alike on every node", async () => {
    const path = `/v1/topics/${TOPIC}/partitions/1/messages`;
    const pages = await Promise.all(nodes.map(async (node) => {
      const seen: string[][] = [];
      let offset = 0;
      for (let page = 0; page < 10; page++) {
        const answer = await call(node, `${path}?offset=${offset}&max=2`);
        expect(answer.status).toBe(200);
        if (answer.body.messages.length === 0) break;
        seen.push(answer.body.messages.map((m: { payload: string }) => m.payload));
        offset = answer.body.nextOffset;
      }
      return { seen, offset };
    }));
    for (const page of pages) expect(page).toEqual(pages[0]);
    expect(pages[0].seen).toEqual([["p1-m0", "p1-m1"], ["p1-m2", "p1-m3"], ["p1-m4"]]);
    const end = pages[0].offset;
    for (const answer of await onEveryNode(`${path}?offset=${end}`)) {
      expect(answer.body).toMatchObject({ messages: [], nextOffset: end, endOffset: end });
    }
    for (const answer of await onEveryNode(`${path}?offset=${end + 1000}`)) {
      expect([answer.status, answer.body.error.kind]).toEqual([404, "notFound"]);
    }
    for (const answer of await onEveryNode(`${path}?offset=3`)) {
      expect([answer.status, answer.body.error.kind]).toEqual([400, "invalidOffset"]);
    }
    for (const answer of await onEveryNode(`/v1/topics/${TOPIC}/partitions/7/messages`)) {
      expect([answer.status, answer.body.error.kind]).toEqual([404, "topicNotFound"]);
    }
  });

  test("fetch by count and by time answers the same on every node", async () => {
    const path = `/v1/topics/${TOPIC}/partitions/2/messages`;
    const all = (await call(holderOf(2), path)).body.messages as {
      offset: number;
      timestamp: string;
    }[];
    expect(all.length).toBe(PER_PARTITION);
    const last = await onEveryNode(`${path}?last=2`);
    for (const answer of last) expect(answer).toEqual(last[0]);
    expect(last[0].body.messages.map((m: { payload: string }) => m.payload)).toEqual([
      "p2-m3",
      "p2-m4",
    ]);
    const at = all[2].timestamp;
    const expected = all.find((m) => m.timestamp >= at)!.offset;
    const timed = await onEveryNode(`${path}?fromTime=${encodeURIComponent(at)}`);
    for (const answer of timed) {
      expect([answer.status, answer.body.offset]).toEqual([200, expected]);
    }
    // The nodes that do not hold the partition searched it through the edge.
    expect(nodes.filter((node) => !node.logs.get(TOPIC, 2)).length).toBe(2);
  });

  test("MetaQ's /get and /offset answer the same from every node", async () => {
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const path = `/get?topic=${TOPIC}&partition=${partition}&group=g&offset=0&maxsize=4096`;
      const answers = await onEveryNode(path);
      for (const answer of answers) expect(answer).toEqual(answers[0]);
      expect(answers[0].status).toBe(200);
      expect(answers[0].body).toContain(`p${partition}-m4`);
      const query = `topic=${TOPIC}&partition=${partition}`;
      for (const answer of await onEveryNode(`/get?${query}&offset=0&maxsize=4096`)) {
        expect(answer).toEqual(answers[0]); // without a group, as MetaQ's plugin allows
      }
      for (const answer of await onEveryNode(`/offset?${query}&group=g&offset=10`)) {
        expect([answer.status, answer.body]).toEqual([200, "0"]);
      }
    }
  });

  test("a stream from the beginning sends the same records on every node, and resumes anywhere", async () => {
    const total = PARTITIONS * PER_PARTITION;
    const streams = await Promise.all(
      nodes.map((node) => readEvents(node, `/v1/topics/${TOPIC}/stream?from=beginning`, total)),
    );
    for (const events of streams) {
      expect(events.length).toBe(total);
      expect(payloadsOf(events)).toEqual(payloadsOf(streams[0]));
    }
    // Stop after a few events on node 1, resume on each node from its Last-Event-ID.
    const seen = streams[0].slice(0, 4);
    for (const node of nodes) {
      const rest = await readEvents(node, `/v1/topics/${TOPIC}/stream`, total - seen.length, {
        "last-event-id": seen.at(-1)!.id,
      });
      expect(payloadsOf([...seen, ...rest])).toEqual(payloadsOf(streams[0]));
    }
  });

  test("a live stream on a node that does not hold the partition sends new records", async () => {
    const partition = 2;
    const holder = holderOf(partition);
    const reader = nodes.find((node) => node !== holder)!;
    const writer = nodes.find((node) => node !== holder && node !== reader)!;
    const end = holder.logs.get(TOPIC, partition)!.endOffset;
    const live = readEvents(
      reader,
      `/v1/topics/${TOPIC}/stream?partition=${partition}&from=${end}`,
      2,
    );
    for (let index = 0; index < 2; index++) {
      const answer = await post(writer, `/v1/topics/${TOPIC}/messages`, {
        messages: [{ payload: `live-${index}`, partition }],
      });
      expect(answer.status).toBe(200);
    }
    const events = await live;
    expect(events.map((event) => event.data.payload)).toEqual(["live-0", "live-1"]);
  });
});

describe("groups, the overview and metrics answer the same on every node", () => {
  test("consumer groups and their lag are the same on every node", async () => {
    await groupCommand(nodes[1], "adjust", ["billing", TOPIC, "*", "earliest", "force"]);
    const ends = Array.from(
      { length: PARTITIONS },
      (_, partition) => holderOf(partition).logs.get(TOPIC, partition)!.endOffset,
    );
    const lag = ends.reduce((total, end) => total + end, 0);
    await waitFor("every node to show the lag", async () => {
      const answers = await onEveryNode("/v1/groups/billing");
      return answers.every((answer) => answer.status === 200 && answer.body.lagBytes === lag);
    }, { timeoutMs: 10_000 });
    const answers = await onEveryNode("/v1/groups");
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    const billing = answers[0].body.groups.find((g: { group: string }) => g.group === "billing");
    expect(billing.partitions.map((p: { endOffset: number }) => p.endOffset)).toEqual(ends);
  });

  test("a reset through the node coordinating groups is seen on every node", async () => {
    const coordinator = nodes.find((node) =>
      node.cluster!.leaderOf("__meta-0")?.nodeId === node.cluster!.nodeId
    )!;
    const topic = SPREAD[nodes.indexOf(coordinator)];
    await post(coordinator, `/v1/topics/${topic}/messages`, {
      messages: [{ payload: "x", partition: 0 }],
    });
    await groupCommand(coordinator, "adjust", ["local", topic, "0", "earliest", "force"]);
    const end = coordinator.logs.get(topic, 0)!.endOffset;
    const reset = await post(coordinator, "/v1/groups/local/reset", {
      topic,
      partition: 0,
      to: "end",
    });
    expect(reset.body.reset).toEqual([{ group: "local", topic, partition: 0, offset: end }]);
    for (const answer of await onEveryNode("/v1/groups/local")) {
      expect(answer.body).toMatchObject({ lagBytes: 0, partitions: [{ committedOffset: end }] });
    }
  });

  test("a reset through any node reaches the coordinator, wherever the partition is held", async () => {
    for (const [index, topic] of SPREAD.entries()) {
      const holder = nodes[index];
      const answer = await post(holder, `/v1/topics/${topic}/messages`, {
        messages: [{ payload: "one", partition: 0 }, { payload: "two", partition: 0 }],
      });
      expect(answer.status).toBe(200);
      const end = holder.logs.get(topic, 0)!.endOffset;
      await groupCommand(nodes[0], "adjust", ["spread", topic, "0", "earliest", "force"]);
      for (const node of nodes) {
        const reset = await post(node, "/v1/groups/spread/reset", {
          topic,
          partition: 0,
          to: "end",
        });
        expect([topic, node.cluster!.nodeId, reset.status, reset.body.error]).toEqual([
          topic,
          node.cluster!.nodeId,
          200,
          undefined,
        ]);
        expect(reset.body.reset).toEqual([{ group: "spread", topic, partition: 0, offset: end }]);
      }
    }
  });

  test("the overview shows every node's role and health and each partition's leader", async () => {
    const answers = await onEveryNode("/v1/overview");
    for (const [index, answer] of answers.entries()) {
      expect(answer.status).toBe(200);
      const { cluster, topics } = answer.body;
      expect(cluster.nodeId).toBe(String(NODES[index]));
      expect(cluster.nodes.map((node: { id: string }) => node.id)).toEqual(["1", "2", "3"]);
      expect(cluster.nodes.every((node: { healthy: boolean }) => node.healthy)).toBe(true);
      expect(cluster.nodes.filter((node: { role: string }) => node.role === "leader").length)
        .toBe(1);
      expect(topics.map((topic: { name: string }) => topic.name).sort()).toEqual(
        ["clicks", "events", TOPIC, "payments"],
      );
      const orders = topics.find((topic: { name: string }) => topic.name === TOPIC);
      expect(orders.partitions.map((p: { leader: string }) => p.leader)).toEqual(
        Array.from({ length: PARTITIONS }, (_, p) => String(holderOf(p).cluster!.nodeId)),
      );
    }
    const leads = answers.map((answer) =>
      answer.body.cluster.nodes.map((node: { leads: number }) => node.leads)
    );
    for (const counts of leads) expect(counts).toEqual(leads[0]);
  });

  test("produce rates of every partition show on every node, not only on its leader", async () => {
    // Traffic into every partition, one round per check, until each node sees it everywhere.
    let round = 0;
    await waitFor("cluster-wide rates", async () => {
      const messages = Array.from(
        { length: PARTITIONS },
        (_, partition) => ({ payload: `rate-${round}`, partition }),
      );
      round += 1;
      expect((await post(nodes[0], `/v1/topics/${TOPIC}/messages`, { messages })).status)
        .toBe(200);
      const answers = await onEveryNode(`/v1/topics/${TOPIC}`);
      return answers.every((answer) =>
        answer.body.partitions.every((p: { produceMessagesPerSecond: number }) =>
          p.produceMessagesPerSecond > 0
        )
      );
    }, { timeoutMs: 15_000, everyMs: 100 });
  });

  test("when traffic stops, every node's rates fall to zero and the partitions keep their figures", async () => {
    // Leaders then send only figures that changed (and each once more after its last change).
    await waitFor("zero rates everywhere", async () => {
      const answers = await onEveryNode(`/v1/topics/${TOPIC}`);
      return answers.every((answer) =>
        answer.body.partitions.every((p: { produceMessagesPerSecond: number }) =>
          p.produceMessagesPerSecond === 0
        )
      );
    }, { timeoutMs: 15_000, everyMs: 200 });
    const ends = (await onEveryNode(`/v1/topics/${TOPIC}`)).map((answer) =>
      JSON.stringify(
        answer.body.partitions.map((p: { partition: number; endOffset: number }) => [
          p.partition,
          p.endOffset,
        ]),
      )
    );
    for (const each of ends) expect(each).toBe(ends[0]);
    expect(JSON.parse(ends[0]).every(([, end]: number[]) => end > 0)).toBe(true);
  });

  test("metrics give every node the same partitions, ends and leaders, and no internal topic", async () => {
    const read = async (node: App) => {
      const text = (await call(node, "/metrics")).body as string;
      return text.split("\n").filter((line) =>
        /^metaq_partition_(end_offset|start_offset|leader)\{/.test(line)
      ).sort();
    };
    await waitFor("the same partition metrics on every node", async () => {
      const lines = await Promise.all(nodes.map(read));
      return lines.every((list) => JSON.stringify(list) === JSON.stringify(lines[0]));
    }, { timeoutMs: 10_000 });
    const lines = await read(nodes[0]);
    const partitions = SPREAD.reduce(
      (total, topic) => total + nodes[0].broker.topicSettings(topic)!.numPartitions,
      0,
    );
    const spread = (line: string) => SPREAD.some((topic) => line.includes(`topic="${topic}"`));
    expect(lines.filter((line) => line.startsWith("metaq_partition_leader") && spread(line)).length)
      .toBe(partitions);
    for (const answer of await onEveryNode("/metrics")) {
      expect(answer.body).not.toContain('topic="__');
      expect(answer.body).toContain("metaq_raft_role{");
    }
  });
});
