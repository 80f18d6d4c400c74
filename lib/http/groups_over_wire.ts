/**
 * @module The HTTP API's view of consumer groups (views.ts GroupsView), asked through the edge
 * with the same `describe`, `adjust` and `forget` commands a client sends: they reach the node that
 * coordinates groups wherever it is, so every node answers alike (and a reset goes through the
 * same checks as `metaq groups reset`: refused while members are active).
 */
import { BrokerError } from "../errors.ts";
import type { GroupReport } from "../protocol/group_wire.ts";
import { errorFromResult } from "../protocol/reply.ts";
import type { Requests } from "../server/edge.ts";
import type { GroupDescription, GroupsView } from "./views.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "./wire_reply.ts";

export function groupsOverWire(requests: Requests): GroupsView {
  const send = async (verb: string, args: string[]): Promise<string> => {
    const answer = await ask(
      (command, respond) => requests.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
      { kind: "extension", verb, args, opaque: 0, body: new Uint8Array(0) },
    );
    if (answer.kind !== "result") throw new BrokerError("internal", `${verb} answered a value`);
    if (answer.code === 200) return answer.text;
    throw errorFromResult(answer.code, answer.text);
  };
  const describeAll = async (): Promise<GroupDescription[]> => {
    const reply = JSON.parse(await send("describe", ["*"])) as { groups: GroupReport[] };
    return reply.groups.map(descriptionOf);
  };
  return {
    list: async () => (await describeAll()).map((description) => description.group),
    describeAll,
    async describe(group): Promise<GroupDescription | undefined> {
      return (await describeAll()).find((description) => description.group === group);
    },
    async reset(request) {
      await send("adjust", [
        request.group,
        request.topic,
        String(request.partition),
        String(request.offset),
        "safe",
      ]);
    },
    async delete(group) {
      await send("forget", [group]);
    },
  };
}

function descriptionOf(report: GroupReport): GroupDescription {
  return {
    group: report.group,
    members: report.members.map((member) => ({ id: member.id, topics: member.topics })),
    offsets: report.partitions
      .filter((partition) => partition.committed !== null)
      .map((partition) => ({
        topic: partition.topic,
        partition: partition.partition,
        offset: partition.committed!,
        owner: partition.owner ?? undefined,
        end: partition.end,
      })),
  };
}
