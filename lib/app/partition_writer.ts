/**
 * @module How the transactions part appends a commit's batches: a `commitbatch` command sent
 * through the edge, which serves it here when this node leads the partition and forwards it to
 * the leader otherwise. So the coordinator never needs to know where a partition's leader is.
 */
import { BrokerError } from "../errors.ts";
import type { PartitionWriter } from "../broker/tx/manager.ts";
import { COMMIT_BATCH_VERB, TX_INTERNAL_PEER } from "../broker/tx/tx_part.ts";
import type { Command } from "../protocol/commands.ts";
import { plainReply } from "../protocol/forwarded_reply.ts";
import { errorFromResult, INTERNAL_CONNECTION_ID, type RequestContext } from "../protocol/reply.ts";
import type { Requests } from "../server/edge.ts";
import type { Logs } from "../store/log.ts";
import type { MessageStore } from "../store/message_store.ts";

const CONTEXT: RequestContext = {
  connectionId: INTERNAL_CONNECTION_ID,
  peer: TX_INTERNAL_PEER,
  internal: true,
};

export function edgeWriter(parts: {
  requests: () => Requests;
  logs: Logs;
  /** The local store, on a broker that runs alone (the test-only torn append writes there). */
  local?: MessageStore;
}): PartitionWriter {
  return {
    sinceOf: (topic, partition) => parts.logs.get(topic, partition)?.endOffset ?? 0,
    appendMissing(topic, partition, batch, since) {
      const command: Command = {
        kind: "extension",
        verb: COMMIT_BATCH_VERB,
        args: [topic, String(partition), String(since), String(batch.length)],
        opaque: 0,
        body: batch,
      };
      return new Promise((resolve, reject) => {
        parts.requests().dispatch(command, CONTEXT, (answer) => {
          const reply = plainReply(answer);
          if (reply.kind === "result" && reply.code === 200) return resolve();
          if (reply.kind !== "result") {
            return reject(new BrokerError("internal", "a commit batch got no result"));
          }
          const text = typeof reply.text === "string"
            ? reply.text
            : new TextDecoder().decode(reply.text ?? new Uint8Array());
          reject(errorFromResult(reply.code, text));
        });
      });
    },
    appendRawForTest: parts.local
      ? async (topic, partition, bytes) => {
        const log = await parts.local!.getOrCreate(topic, partition);
        await log.appendEncoded(bytes, 0).done;
      }
      : undefined,
  };
}
