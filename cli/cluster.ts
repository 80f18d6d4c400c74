/**
 * @module `metaq cluster status|scrub|replace|force-recover|add|remove|rebalance`: look at and
 * operate a Raft-lite cluster (force-recover's dialogue is in cluster_recover.ts, membership
 * changes in cluster_membership.ts).
 */
import { MetaqClient } from "../lib/client/client.ts";
import type { ScrubReport } from "../lib/cluster/cluster_node.ts";
import type { ClusterStatusReport } from "../lib/cluster/status.ts";
import { describeError } from "../lib/errors.ts";
import { recoverArgs, runForceRecover } from "./cluster_recover.ts";
import {
  MEMBERSHIP_ACTIONS,
  MEMBERSHIP_FLAGS,
  MEMBERSHIP_USAGE,
  membershipRequest,
  printMembership,
} from "./cluster_membership.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE =
  `Usage: metaq cluster status|scrub|replace|force-recover|add|remove|rebalance [options]

  status                 every group on the node: role, term, leader, commit offset, log end,
                         followers' match offsets, repair mode, fsync latency, elections in the
                         last minute, and why a group has no leader
  scrub                  re-read every stored record on the node and check its checksum, then
                         compare the committed bytes with the other copies of each group (this
                         finds a flipped bit in a header's id or flag, which no checksum covers);
                         a damaged replica is cut at the damage and refilled from its peers.
                         A copy counts as damaged only where a majority of the group's voters
                         hold other bytes. Exits 1 when damage was found.
  replace --node-id N    accept the node now running as N (started on an empty disk, so it has a
                         new identity) as a member: it catches up, then votes. Replace one node
                         at a time, and only one that is really gone.
  force-recover --partition T-P [--from-node N] | --all
                         bring back a group that cannot elect a leader because a majority of
                         its copies are in repair mode (after a power loss of the whole cluster
                         with --fsync interval:MS): one copy becomes the base (by default the
                         most complete: highest last epoch, then end offset), the others are cut
                         back to it and refilled from it. Shows first what may be lost and asks
                         for confirmation; refuses groups that have a leader or can still elect
                         one (add --force to recover a leaderless group anyway).
${MEMBERSHIP_USAGE}

Options:
  --format text|json     output (default text); force-recover with json only prints the plan
                         unless --yes is given
  --yes                  force-recover without asking

${CONNECTION_USAGE}

Examples:
  metaq cluster status --broker 10.0.0.1:8123
  metaq cluster replace --node-id 2 --broker 10.0.0.1:8123
  metaq cluster force-recover --partition orders-0 --broker 10.0.0.1:8123
  metaq cluster add --node-id 4 --address 10.0.0.4:8124 --broker 10.0.0.1:8123
  metaq cluster rebalance --apply --broker 10.0.0.1:8123`;

const SCRUB_TIMEOUT_MS = 30 * 60_000;
/** A recovery of every group of a large cluster restarts thousands of replicas. */
const RECOVER_TIMEOUT_MS = 10 * 60_000;
const ACTIONS = ["status", "scrub", "replace", "force-recover", ...MEMBERSHIP_ACTIONS];

export const cluster: CommandSpec = {
  name: "cluster",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("cluster", args, {
      broker: { type: "string" },
      format: { type: "string" },
      "node-id": { type: "string" },
      partition: { type: "string" },
      "from-node": { type: "string" },
      all: { type: "boolean" },
      yes: { type: "boolean" },
      force: { type: "boolean" },
      ...MEMBERSHIP_FLAGS,
      ...SECURITY_FLAGS,
    }, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const action = positionals[0];
    if (!ACTIONS.includes(action ?? "")) {
      throw new CliError(
        `Cannot run cluster: give ${ACTIONS.join(", ")} (see 'metaq cluster --help')`,
      );
    }
    const nodeId = integerFlag("node-id", values["node-id"], { min: 1, max: 1023 });
    if (action === "replace" && nodeId === undefined) {
      throw new CliError("Cannot replace a node: give --node-id N");
    }
    const membership = membershipRequest(action, nodeId, values);
    const recover = action === "force-recover" ? recoverArgs(values) : undefined;
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      // A scrub reads every stored byte of the node; give it time.
      requestTimeoutMs: action === "scrub"
        ? SCRUB_TIMEOUT_MS
        : action === "force-recover"
        ? RECOVER_TIMEOUT_MS
        : undefined,
      ...clientSecurity(values),
    });
    try {
      if (action === "force-recover") {
        return await runForceRecover(client, recover!);
      }
      if (membership) {
        const answer = await client.extension("cluster", [membership.verb, membership.arg]);
        if (values.format === "json") console.log(answer);
        else printMembership(membership.verb, JSON.parse(answer));
        return 0;
      }
      const text = await client.extension("cluster", [action, nodeId ?? "-"]);
      if (action === "status" && values.format !== "json") {
        printStatus(JSON.parse(text));
      } else if (action === "scrub" && values.format !== "json") {
        return printScrub(JSON.parse(text));
      } else {
        console.log(text);
      }
      return 0;
    } catch (error) {
      throw new CliError(`Cannot run cluster ${action}: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

/** Prints what a scrub found; exits 1 when it found damage (like verify; repairs have started). */
function printScrub(report: ScrubReport): number {
  for (const damage of report.damaged) {
    console.log(
      `${damage.group}: DAMAGED at offset ${damage.offset} (${damage.reason}); repairing from peers`,
    );
  }
  for (const skipped of report.skipped) {
    console.log(`${skipped.group}: not compared with peers: ${skipped.reason}`);
  }
  const bytes = report.checked.reduce((sum, range) => sum + range.to - range.from, 0);
  console.log(
    `scrub: ${report.damaged.length} damaged, ${report.checked.length} groups agree with their ` +
      `peers (${bytes} bytes compared), ${report.skipped.length} not compared`,
  );
  return report.damaged.length > 0 ? 1 : 0;
}

function printStatus(report: ClusterStatusReport): void {
  console.log(
    `node ${report.nodeId}${
      report.admitted ? "" : " (not admitted: waiting for 'metaq cluster replace')"
    }`,
  );
  for (const peer of report.nodes) {
    console.log(
      `  node ${peer.nodeId}${peer.self ? " (this node)" : ""}  ${
        peer.address ?? "address unknown"
      }  peer ${peer.peer ?? "?"}  ${peer.state === "leaving" ? "LEAVING  " : ""}${
        peer.connected ? "connected" : "UNREACHABLE"
      }`,
    );
  }
  for (const move of report.reassignments ?? []) {
    const behind = Object.entries(move.behindBytes).map(([id, bytes]) =>
      `node ${id} ${bytes === null ? "not started" : `${bytes} bytes behind`}`
    );
    console.log(
      `  moving ${move.group}: voters ${move.voters.join(",")} -> ${move.target.join(",")}` +
        (behind.length > 0 ? ` (${behind.join("; ")})` : " (caught up: changing voters)"),
    );
  }
  const header = [
    "GROUP",
    "ROLE",
    "TERM",
    "LEADER",
    "COMMIT",
    "LOG END",
    "MATCHES",
    "FSYNC MS",
    "ELECTIONS/1M",
    "NOTE",
  ];
  const rows = report.groups.map((group) => [
    group.group,
    group.role,
    String(group.term),
    String(group.leader || "-"),
    String(group.commit),
    String(group.logEnd),
    group.matches
      ? Object.entries(group.matches).map(([id, offset]) => `${id}:${offset ?? "-"}`).join(",")
      : "-",
    String(group.lastFsyncMs),
    String(group.electionsLastMinute),
    group.reason ?? "",
  ]);
  const table = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...table.map((row) => row[column].length)));
  for (const row of table) {
    console.log(row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  }
  const stuck = report.groups.filter((group) => group.recover !== undefined);
  if (stuck.length > 0) {
    console.log(
      `${stuck.length} group(s) cannot elect a leader until an operator acts: run ` +
        (stuck.length === 1 ? `'${stuck[0].recover}'` : "'metaq cluster force-recover --all'") +
        " (it shows what may be lost and asks first)",
    );
  }
  const offsets = report.offsets;
  if (offsets) {
    console.log(
      `group offsets: ${offsets.entries} entries, applied to ${offsets.applied}, ` +
        `snapshot at ${offsets.snapshotBase}, digest ${offsets.digest}`,
    );
  }
}
