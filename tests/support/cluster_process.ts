/**
 * @module Raft-lite clusters of the compiled binary for end-to-end tests: N `metaq serve` child
 * processes on 127.0.0.1 with fast Raft timing, `metaq cluster status` read as JSON, and a
 * bounded wait. The in-process variant for integration tests is cluster_in_process.ts.
 */
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { freePorts } from "./free_port.ts";
import { BrokerProcess, runMetaq } from "./harness.ts";

export const FAST_RAFT_FLAGS = [
  "--raft-heartbeat-ms",
  "100",
  "--raft-election-ms",
  "800-1600",
  "--raft-check-quorum-ms",
  "700",
];

export async function startClusterProcesses(options: {
  dataDir: string;
  nodes?: number;
  http?: boolean;
  args?: readonly string[];
  /** Extra environment per node (index from 0). */
  env?: (index: number) => Record<string, string>;
}): Promise<BrokerProcess[]> {
  const count = options.nodes ?? 3;
  const peerPorts = await freePorts(count);
  const peers = peerPorts.map((port, index) => `${index + 1}=127.0.0.1:${port}`).join(",");
  return await Promise.all(peerPorts.map((port, index) =>
    BrokerProcess.start({
      dataDir: `${options.dataDir}/n${index + 1}`,
      http: options.http ?? false,
      env: options.env?.(index),
      args: [
        "--node-id",
        String(index + 1),
        "--peer-port",
        String(port),
        "--peers",
        peers,
        "--partitions",
        "2",
        ...FAST_RAFT_FLAGS,
        ...(options.args ?? []),
      ],
    })
  ));
}

/** `metaq cluster status` of one node; undefined when it does not answer. */
export async function clusterStatusOf(
  node: BrokerProcess,
): Promise<ClusterStatusReport | undefined> {
  const result = await runMetaq(
    ["cluster", "status", "--broker", node.address, "--format", "json"],
    { timeoutMs: 10_000 },
  );
  return result.code === 0 ? JSON.parse(result.stdout) : undefined;
}

/** The id of the node leading `group` as `node` sees it, or 0. */
export async function leaderSeenBy(node: BrokerProcess, group: string): Promise<number> {
  const report = await clusterStatusOf(node);
  return report?.groups.find((entry) => entry.group === group)?.leader ?? 0;
}

/** The node leading `group` once every node in `nodes` names the same leader (bounded wait). */
export async function agreedLeader(
  nodes: readonly BrokerProcess[],
  group: string,
  timeoutMs = 20_000,
): Promise<BrokerProcess> {
  let leader = 0;
  await eventually(`one leader of ${group} that every node knows`, async () => {
    const seen = await Promise.all(nodes.map((node) => leaderSeenBy(node, group)));
    leader = seen[0];
    return leader > 0 && seen.every((id) => id === leader);
  }, timeoutMs);
  return nodes.find((node) => node.options.dataDir.endsWith(`/n${leader}`))!;
}

/** Polls `check` every 100 ms until it holds; throws after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
