/**
 * @module A Raft-lite cluster of in-process brokers for integration tests: N `assemble()` calls
 * on 127.0.0.1 with free client, HTTP and peer ports and a data directory each, with fast Raft
 * timing. Real TCP between the nodes and to clients; the compiled binary's cluster tests are in
 * tests/e2e. `await using` closes every node.
 */
import { type App, assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { type Logger, silentLogger } from "../../lib/log.ts";
import type { Storage } from "../../lib/store/storage.ts";
import { freePorts } from "./free_port.ts";
import { waitFor } from "./wait.ts";

export interface InProcessCluster extends AsyncDisposable {
  readonly nodes: App[];
  /** The node leading `topic`-`partition` now (waits for one, bounded). */
  leaderOf(topic: string, partition: number): Promise<App>;
  close(): Promise<void>;
}

/** Raft timing for tests: elections settle in well under a second on this machine. */
export const FAST_RAFT = {
  raftHeartbeatMs: "50",
  raftElectionMs: "400-800",
  raftCheckQuorumMs: "350",
};

export async function startCluster(options: {
  dataPath: string;
  nodes?: number;
  /** `[system]` and `[topic=...]` text added to every node's configuration. */
  configText?: string;
  overrides?: Record<string, string>;
  http?: boolean;
  logger?: Logger;
  /** The storage of node `index` (from 0): for tests that slow or fail its fsyncs. */
  storage?: (index: number) => Storage;
}): Promise<InProcessCluster> {
  const count = options.nodes ?? 3;
  const peerPorts = await freePorts(count);
  const peers = peerPorts.map((port, index) => `${index + 1}=127.0.0.1:${port}`).join(",");
  const nodes = await Promise.all(peerPorts.map((_port, index) =>
    assemble({
      config: buildConfig({
        fileText: options.configText,
        overrides: {
          serverPort: "0",
          dashboardHttpPort: "0",
          httpEnabled: options.http ? "true" : "false",
          dataPath: `${options.dataPath}/n${index + 1}`,
          nodeId: String(index + 1),
          peers,
          ...FAST_RAFT,
          ...options.overrides,
        },
      }),
      storage: options.storage?.(index),
      logger: options.logger ?? silentLogger,
    })
  ));
  const close = async () => {
    await Promise.allSettled(nodes.map((node) => node.close()));
  };
  return {
    nodes,
    async leaderOf(topic, partition) {
      let leader: App | undefined;
      await waitFor(`a leader for ${topic}-${partition}`, async () => {
        // Copies open on first use (once a node is admitted): open them, so the group elects.
        await Promise.all(nodes.map((node) => node.cluster?.prepare(topic, partition)));
        leader = nodes.find((node) =>
          node.cluster?.leaderOf(`${topic}-${partition}`)?.nodeId === node.cluster?.nodeId
        );
        return leader !== undefined;
      }, { timeoutMs: 10_000 });
      return leader!;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
