/**
 * @module The HTTP API's and dashboard's view of the cluster (lib/http/views.ts ClusterView),
 * from this node's status: the `__meta-0` group stands for "the cluster" (its leader coordinates
 * consumer groups), and each node is healthy when this node's link to it is up.
 */
import type { ClusterStatus, ClusterView } from "../http/views.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { META_GROUP } from "./placement.ts";
import { clusterStatus } from "./status.ts";

export function clusterView(node: () => ClusterNode | undefined): ClusterView {
  return {
    status(): ClusterStatus {
      const current = node();
      if (!current) throw new Error("the cluster is not running");
      const report = clusterStatus(current);
      const meta = report.groups.find((group) => group.group === META_GROUP);
      const leaderId = meta?.leader ? String(meta.leader) : undefined;
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
        })),
      };
    },
  };
}
