/**
 * `fput`, the put a node forwards to a partition's leader with the message id it chose: a
 * retry of one that was already appended finds it instead of appending it again, a retry of one
 * that never arrived appends it, and no client can send one.
 */
import { expect, test } from "bun:test";
import { FORWARDED_PUT_VERB } from "../../lib/broker/commands.ts";
import type { App } from "../../lib/app/assemble.ts";
import type { ExtensionCommand } from "../../lib/protocol/commands.ts";
import type { MessageId } from "../../lib/protocol/message_id.ts";
import type { Reply } from "../../lib/protocol/reply.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const TOPIC = "fputs";

function fput(
  id: bigint | MessageId,
  since: number,
  attempt: number,
  payload: string,
  epoch: number,
): ExtensionCommand {
  const body = new TextEncoder().encode(payload);
  return {
    kind: "extension",
    verb: FORWARDED_PUT_VERB,
    args: [
      TOPIC,
      "0",
      "0",
      "-1",
      String(id),
      String(since),
      String(attempt),
      String(epoch),
      String(body.length),
    ],
    opaque: 5,
    body,
  };
}

/** The term `node`'s copy of the test's partition is in. */
function termOf(node: App): number {
  return node.broker.logs.get(TOPIC, 0)!.writer.epoch;
}

/** Hands the test partition's leadership from `leader` to `target`; resolves once it leads. */
async function moveLeader(leader: App, target: App): Promise<void> {
  const targetId = target.cluster!.nodeId;
  await waitFor(`node ${targetId} to lead ${TOPIC}-0`, () => {
    if (
      target.cluster!.leaderOf(`${TOPIC}-0`)?.nodeId === targetId &&
      target.broker.logs.get(TOPIC, 0)!.writer.ready
    ) {
      return true;
    }
    leader.cluster!.replica(TOPIC, 0)!.transferLeadership(targetId);
    return false;
  }, { timeoutMs: 10_000 });
}

/** Sends `command` to `node` as if node `from` had forwarded it; resolves with the reply. */
function forwardedTo(node: App, from: number, command: ExtensionCommand): Promise<Reply> {
  return new Promise((resolve) =>
    node.edge.dispatch(
      command,
      { connectionId: 9, peer: `node ${from}`, originNode: from },
      resolve,
    )
  );
}

function replyText(reply: Reply): string {
  expect(reply.kind).toBe("result");
  const { code, text } = reply as { code: number; text?: string | Uint8Array };
  return `${code} ${typeof text === "string" ? text : new TextDecoder().decode(text)}`;
}

test("a retried fput is appended once; a client cannot send one", async () => {
  await using temp = tempDir("metaq-fput-");
  await using cluster = await startCluster({ dataPath: temp.path });
  const leader = await cluster.leaderOf(TOPIC, 0);
  const follower = cluster.nodes.find((node) => node !== leader)!;
  const from = follower.cluster!.nodeId;
  const id = follower.broker.ids.nextId();

  const first = replyText(await forwardedTo(leader, from, fput(id, 0, 1, "once", termOf(leader))));
  expect(first).toMatch(new RegExp(`^200 ${id} 0 \\d+$`));
  // The answer was lost on its way back: the follower sends it again, to the same leader here.
  const again = replyText(await forwardedTo(leader, from, fput(id, 0, 2, "once", termOf(leader))));
  expect(again).toBe(first);
  // A retry of a put that never arrived (new id) is appended.
  const other = follower.broker.ids.nextId();
  const missing = replyText(
    await forwardedTo(leader, from, fput(other, 0, 2, "late", termOf(leader))),
  );
  expect(missing).toMatch(new RegExp(`^200 ${other} 0 \\d+$`));

  using socket = await RawSocket.connect(leader.port);
  expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["once", "late"]);

  // A follower that receives one does not lead: it says so, and appends nothing.
  const refused = replyText(
    await forwardedTo(
      follower,
      from,
      fput(BigInt(String(other)) + 1n, 0, 1, "x", termOf(follower)),
    ),
  );
  expect(refused).toMatch(/^503 Cannot serve partition: this node is not its leader/);

  // A client cannot put with an id of its choosing.
  socket.write(`${FORWARDED_PUT_VERB} ${TOPIC} 0 0 -1 ${BigInt(String(id)) + 7n} 0 1 1 1 11\r\nz`);
  const reply = await socket.readFrame(5_000);
  expect(reply.header).toMatch(/^result 403 /);
  expect(new TextDecoder().decode(reply.body)).toContain("sent between cluster nodes only");
  // Nor through a follower, which would forward it to the leader as if it were its own.
  using viaFollower = await RawSocket.connect(follower.port);
  viaFollower.write(
    `${FORWARDED_PUT_VERB} ${TOPIC} 0 0 -1 ${BigInt(String(id)) + 9n} 0 1 1 1 12\r\nz`,
  );
  expect((await viaFollower.readFrame(5_000)).header).toMatch(/^result 403 /);
  expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["once", "late"]);
}, 60_000);

test(
  "a first fput that arrives in a later term, after its retry was appended, is not appended again",
  async () => {
    await using temp = tempDir("metaq-fput-late-");
    await using cluster = await startCluster({ dataPath: temp.path });
    const first = await cluster.leaderOf(TOPIC, 0);
    const [second, forwarder] = cluster.nodes.filter((node) => node !== first);
    const from = forwarder.cluster!.nodeId;
    using socket = await RawSocket.connect(first.port);
    // Something in the log before, so the offsets below are not all 0.
    const setup = forwarder.broker.ids.nextId();
    replyText(await forwardedTo(first, from, fput(setup, 0, 1, "setup", termOf(first))));

    // The forwarder sends attempt 1 to the leader in its term; the link stalls and holds it.
    const id = forwarder.broker.ids.nextId();
    const since = first.broker.logs.get(TOPIC, 0)!.endOffset;
    const held = fput(id, since, 1, "held", termOf(first));
    // The leader changes; the forwarder sends attempt 2 to the new one, which appends it.
    await moveLeader(first, second);
    const retried = replyText(
      await forwardedTo(second, from, fput(id, since, 2, "held", termOf(second))),
    );
    expect(retried).toMatch(new RegExp(`^200 ${id} 0 \\d+$`));
    // The first node leads again, in a later term, when the stalled link hands attempt 1 over.
    await moveLeader(second, first);
    expect(termOf(first)).toBeGreaterThan(Number(held.args[7]));
    const late = replyText(await forwardedTo(first, from, held));
    expect(late).toBe(retried);
    expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["setup", "held"]);

    // A late attempt 1 whose put no attempt appended is appended, once.
    const lost = forwarder.broker.ids.nextId();
    const stale = fput(lost, first.broker.logs.get(TOPIC, 0)!.endOffset, 1, "lost", 1);
    const appended = replyText(await forwardedTo(first, from, stale));
    expect(appended).toMatch(new RegExp(`^200 ${lost} 0 \\d+$`));
    expect(replyText(await forwardedTo(first, from, stale))).toBe(appended);
    expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["setup", "held", "lost"]);
  },
  60_000,
);
