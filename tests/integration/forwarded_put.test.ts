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

const TOPIC = "fputs";

function fput(
  id: bigint | MessageId,
  since: number,
  attempt: number,
  payload: string,
): ExtensionCommand {
  const body = new TextEncoder().encode(payload);
  return {
    kind: "extension",
    verb: FORWARDED_PUT_VERB,
    args: [TOPIC, "0", "0", "-1", String(id), String(since), String(attempt), String(body.length)],
    opaque: 5,
    body,
  };
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

  const first = replyText(await forwardedTo(leader, from, fput(id, 0, 1, "once")));
  expect(first).toMatch(new RegExp(`^200 ${id} 0 \\d+$`));
  // The answer was lost on its way back: the follower sends it again, to the same leader here.
  const again = replyText(await forwardedTo(leader, from, fput(id, 0, 2, "once")));
  expect(again).toBe(first);
  // A retry of a put that never arrived (new id) is appended.
  const other = follower.broker.ids.nextId();
  const missing = replyText(await forwardedTo(leader, from, fput(other, 0, 2, "late")));
  expect(missing).toMatch(new RegExp(`^200 ${other} 0 \\d+$`));

  using socket = await RawSocket.connect(leader.port);
  expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["once", "late"]);

  // A follower that receives one does not lead: it says so, and appends nothing.
  const refused = replyText(
    await forwardedTo(follower, from, fput(BigInt(String(other)) + 1n, 0, 1, "x")),
  );
  expect(refused).toMatch(/^503 Cannot serve partition: this node is not its leader/);

  // A client cannot put with an id of its choosing.
  socket.write(`${FORWARDED_PUT_VERB} ${TOPIC} 0 0 -1 ${BigInt(String(id)) + 7n} 0 1 1 11\r\nz`);
  const reply = await socket.readFrame(5_000);
  expect(reply.header).toMatch(/^result 403 /);
  expect(new TextDecoder().decode(reply.body)).toContain("sent between cluster nodes only");
  // Nor through a follower, which would forward it to the leader as if it were its own.
  using viaFollower = await RawSocket.connect(follower.port);
  viaFollower.write(
    `${FORWARDED_PUT_VERB} ${TOPIC} 0 0 -1 ${BigInt(String(id)) + 9n} 0 1 1 12\r\nz`,
  );
  expect((await viaFollower.readFrame(5_000)).header).toMatch(/^result 403 /);
  expect(await messagesThrough(socket, TOPIC, 0)).toEqual(["once", "late"]);
}, 60_000);
