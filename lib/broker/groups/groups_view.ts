/**
 * @module The HTTP API's view of consumer groups (lib/http/views.ts), read from the group
 * service: names, members with their topics, committed offsets with owners, and resets that
 * go through the same checks as `metaq groups reset` (refused while members are active).
 */
import type { GroupDescription, GroupsView } from "../../http/views.ts";
import type { GroupService } from "./group_service.ts";

export function groupsView(service: () => GroupService | undefined): GroupsView {
  const live = () => {
    const current = service();
    if (!current) throw new Error("groups are not running");
    return current;
  };
  return {
    list: () => live().describe().map((report) => report.group),
    describe(group): GroupDescription | undefined {
      const current = live();
      if (!current.coordinator.groupNames().includes(group)) return undefined;
      const [report] = current.describe(group);
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
          })),
      };
    },
    async reset(request) {
      await live().reset({
        group: request.group,
        topic: request.topic,
        partition: request.partition,
        to: request.offset,
        force: false,
      });
    },
  };
}
