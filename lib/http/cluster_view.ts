/**
 * @module The HTTP API's and dashboard's view of the cluster (lib/http/views.ts ClusterView),
 * from this node's status and what the other nodes last said about themselves: the `__meta-0`
 * group stands for "the cluster" (its leader coordinates consumer groups), each node is healthy
 * when this node's link to it is up, and each user partition has the leader this node knows,
 * with the figures that leader shares (cluster_figures.ts).
 */
import type { ClusterNode } from "../cluster/cluster_node.ts";
import { META_GROUP } from "../cluster/placement.ts";
import { clusterStatus } from "../cluster/status.ts";
import { isInternalTopic } from "../store/log.ts";
import type { ClusterStatus, ClusterView, PartitionLead } from "./views.ts";

export function clusterView(node: () => ClusterNode | undefined): ClusterView {
  const running = (): ClusterNode => {
    const current = node();
    if (!current) throw new Error("the cluster is not running");
    return current;
  };
  return {
    status(): ClusterStatus {
      const current = running();
      const report = clusterStatus(current);
      const meta = report.groups.find((group) => group.group === META_GROUP);
      const leaderId = meta?.leader ? String(meta.leader) : undefined;
      const leads = new Map<string, number>();
      for (const lead of partitionLeads(current)) {
        leads.set(lead.leader, (leads.get(lead.leader) ?? 0) + 1);
      }
      return {
        nodeId: String(report.nodeId),
        role: meta?.role ?? (report.admitted ? "follower" : "not admitted"),
        term: meta?.term ?? 0,
        commitIndex: meta?.commit ?? 0,
        leaderId,
        ready: report.admitted && leaderId !== undefined,
        nodes: report.nodes.map((peer) => ({
          id: String(peer.nodeId),
          address: peer.address ?? "unknown",
          role: leaderId === String(peer.nodeId) ? "leader" : "follower",
          healthy: peer.connected,
          matchIndex: meta?.matches?.[String(peer.nodeId)] ?? undefined,
          leads: leads.get(String(peer.nodeId)) ?? 0,
          self: peer.self,
        })),
      };
    },
    partitions: () => partitionLeads(running()),
  };
}

/**
 * Leaders of user partitions: what connected nodes say they lead, overridden by this node's own
 * replicas (a replica hears its group's current leader, a peer's word may be a second old).
 */
function partitionLeads(node: ClusterNode): PartitionLead[] {
  const infos = new Map(node.peerInfos().map((info) => [info.nodeId, info]));
  const leads = new Map<string, PartitionLead>();
  const add = (group: string, leader: number) => {
    const dash = group.lastIndexOf("-");
    const topic = group.slice(0, dash);
    const partition = Number(group.slice(dash + 1));
    if (dash <= 0 || isInternalTopic(topic) || !Number.isInteger(partition)) return;
    const here = leader === node.nodeId;
    const figures = here ? undefined : infos.get(leader)?.figures?.[group];
    leads.set(group, { topic, partition, leader: String(leader), here, figures });
  };
  for (const info of infos.values()) {
    if (!node.isConnected(info.nodeId)) continue;
    for (const group of info.leads ?? []) add(group, info.nodeId);
  }
  for (const replica of node.replicas()) {
    const leader = node.leaderOf(replica.name);
    if (leader) add(replica.name, leader.nodeId);
    else leads.delete(replica.name);
  }
  return [...leads.values()].sort((a, b) =>
    a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1
  );
}
