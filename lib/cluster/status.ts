/**
 * @module What `metaq cluster status` and `stats cluster` show: per node and per group the
 * role, term, leader, commit offset, log end, followers' match offsets (on the leader), repair
 * mode, last fsync latency, elections in the last minute, and a plain reason when a group has
 * no leader (replication.md 5.9).
 */
import type { ClusterNode } from "./cluster_node.ts";
import { recoverCommand } from "./recovery_plan.ts";
import type { Reassignment } from "./envelope.ts";
import type { Replica } from "./replica.ts";

/** A node's applied table of committed group offsets, to compare nodes (equal digests agree). */
export interface OffsetsSummary {
  readonly entries: number;
  readonly applied: number;
  readonly snapshotBase: number;
  readonly digest: string;
}

export interface GroupStatus {
  readonly group: string;
  readonly role: string;
  readonly term: number;
  readonly leader: number;
  readonly leaderAddress?: string;
  readonly commit: number;
  readonly logStart: number;
  readonly logEnd: number;
  readonly matches?: Readonly<Record<string, number | null>>;
  readonly repair: boolean;
  /** The group sleeps on this node (quiescent: nothing to replicate, no ticks counted). */
  readonly asleep: boolean;
  readonly lastFsyncMs: number;
  readonly electionsLastMinute: number;
  readonly reason?: string;
  /** The command that brings the group back, when it cannot elect a leader by itself. */
  readonly recover?: string;
}

export interface NodeStatus {
  readonly nodeId: number;
  readonly address?: string;
  /** `host:port` of its peer port, as the cluster's metadata records it. */
  readonly peer?: string;
  readonly connected: boolean;
  readonly self: boolean;
  /** `active`, `leaving` (its copies move away), or `seed` (metadata not applied here yet). */
  readonly state: "active" | "leaving" | "seed";
}

export interface ClusterStatusReport {
  readonly nodeId: number;
  readonly admitted: boolean;
  readonly nodes: readonly NodeStatus[];
  readonly groups: readonly GroupStatus[];
  /** Groups whose copies are moving, from every leader this node hears. */
  readonly reassignments: readonly Reassignment[];
  /** This node's copy of the committed group offsets (`__meta-0` applied); equal digests agree. */
  readonly offsets?: OffsetsSummary;
}

export function clusterStatus(node: ClusterNode, offsets?: OffsetsSummary): ClusterStatusReport {
  const state = node.metadata?.state;
  const members = state?.initialized
    ? state.members().map((member) => ({
      id: member.id,
      peer: member.peer,
      state: member.leaving ? "leaving" as const : "active" as const,
    }))
    : node.settings.peers.map((peer) => ({
      id: peer.id,
      peer: `${peer.host}:${peer.port}`,
      state: "seed" as const,
    }));
  const nodes = members.map((member) => ({
    nodeId: member.id,
    address: node.clientAddressOf(member.id),
    peer: member.peer,
    connected: node.isConnected(member.id),
    self: member.id === node.nodeId,
    state: member.state,
  }));
  const groups = node.replicas().map((replica): GroupStatus => {
    const status = replica.status();
    const unreachable = replica.voters.filter((id) => !node.isConnected(id));
    const quorum = Math.floor(replica.voters.length / 2) + 1;
    let reason: string | undefined;
    const stuck = replica.stopped ? undefined : node.stuckReason(replica.name);
    if (replica.stopped) {
      reason = "replica stopped after a storage error; it starts again from its files within 2 s";
    } else if (stuck) reason = stuck;
    else if (status.repair?.base !== undefined) {
      reason = `replica in repair mode: force-recover made node ${status.repair.base} the base`;
    } else if (status.repair) reason = "replica in repair mode: catching up from the leader";
    else if (status.leaderId === 0) {
      reason = replica.voters.length - unreachable.length < quorum
        ? `no leader: ${unreachable.length} of ${replica.voters.length} voters unreachable`
        : "no leader yet: election in progress";
    }
    return {
      group: replica.name,
      role: status.role,
      term: status.term,
      leader: status.leaderId,
      leaderAddress: status.leaderId ? node.clientAddressOf(status.leaderId) : undefined,
      commit: replica.commitOffset,
      logStart: replica.log.startOffset,
      logEnd: replica.log.writtenEnd,
      matches: status.matches
        ? Object.fromEntries(
          Object.entries(status.matches).map(([id, position]) => [id, position?.offset ?? null]),
        )
        : undefined,
      repair: status.repair !== undefined,
      asleep: replica.quiet,
      lastFsyncMs: Math.round(replica.log.lastSyncLatencyMs * 100) / 100,
      electionsLastMinute: replica.electionsLastMinute,
      reason,
      ...(stuck ? { recover: recoverCommand(replica.name) } : {}),
    };
  });
  const reassignments = [
    ...reassignmentsLed(node.nodeId, node.replicas()),
    ...node.peerInfos().flatMap((info) => info.moving ?? []),
  ].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
  return {
    nodeId: node.nodeId,
    admitted: node.membership.identity.admitted,
    nodes,
    groups,
    reassignments,
    offsets,
  };
}

/** Reassignments this node leads, at most `limit` (a node tells its peers about them). */
export function reassignmentsLed(
  nodeId: number,
  replicas: readonly Replica[],
  limit = 1000,
): Reassignment[] {
  const moving: Reassignment[] = [];
  for (const replica of replicas) {
    if (!replica.isLeader || moving.length >= limit) continue;
    const target = replica.raft.targetVoters;
    const voters = replica.voters;
    if (!target || sameMembers(target, voters)) continue;
    const status = replica.status();
    const behindBytes: Record<string, number | null> = {};
    for (const id of target) {
      if (id === nodeId || voters.includes(id)) continue;
      const match = status.matches?.[String(id)];
      behindBytes[String(id)] = match ? Math.max(0, status.last.offset - match.offset) : null;
    }
    moving.push({ group: replica.name, leader: nodeId, voters, target, behindBytes });
  }
  return moving;
}

/** The report as `stats cluster` lines: `<key> <value...>`. */
export function statusLines(report: ClusterStatusReport): string[] {
  const lines = [`node ${report.nodeId} admitted ${report.admitted}`];
  for (const peer of report.nodes) {
    lines.push(
      `peer ${peer.nodeId} address ${peer.address ?? "unknown"} peer_address ${
        peer.peer ?? "unknown"
      } ` +
        `state ${peer.state} connected ${peer.connected}`,
    );
  }
  for (const move of report.reassignments) {
    const behind = Object.entries(move.behindBytes).map(([id, bytes]) => `${id}:${bytes ?? "-"}`);
    lines.push(
      `moving ${move.group} leader ${move.leader} voters ${move.voters.join(",")} target ${
        move.target.join(",")
      } behind_bytes ${behind.join(",") || "-"}`,
    );
  }
  for (const group of report.groups) {
    const matches = group.matches
      ? Object.entries(group.matches).map(([id, offset]) => `${id}:${offset ?? "-"}`).join(",")
      : "-";
    lines.push(
      `group ${group.group} role ${group.role} term ${group.term} leader ${group.leader} commit ${group.commit} ` +
        `log_end ${group.logEnd} matches ${matches} repair ${group.repair} asleep ${group.asleep} fsync_ms ${group.lastFsyncMs} ` +
        `elections_1m ${group.electionsLastMinute}${group.reason ? ` reason ${group.reason}` : ""}`,
    );
  }
  const offsets = report.offsets;
  if (offsets) {
    lines.push(
      `offsets entries ${offsets.entries} applied ${offsets.applied} snapshot_base ${offsets.snapshotBase} digest ${offsets.digest}`,
    );
  }
  return lines;
}

/** Whether two voter lists name the same nodes (in any order; no copies, no sorting). */
function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}
