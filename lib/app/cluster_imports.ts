/**
 * @module What `assemble` needs only on a cluster node (Raft-lite, the peer transport, the
 * forwarder), in one module it imports dynamically: a broker that runs alone never loads the
 * Raft code (start-up time is mostly module loading; bench/README.md "Start-up").
 */
export { clusterCommands, clusterStatsLines } from "../cluster/cluster_commands.ts";
export { ClusterNode, INTERNAL_TOPICS } from "../cluster/cluster_node.ts";
export { loadMembership } from "../cluster/membership.ts";
export { CLUSTER_TOPIC } from "../cluster/metadata.ts";
export { PeerTransport } from "../cluster/peer_transport.ts";
export { readStartupState } from "../cluster/startup_state.ts";
export { fileTracer, NO_TRACE } from "../cluster/trace.ts";
export { decodeFigures, groupFigures } from "../http/cluster_figures.ts";
export { Forwarder } from "../server/forwarder.ts";
