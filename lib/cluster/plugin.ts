/**
 * @module The broker plugin that turns a node into a cluster member: loads its identity, starts
 * the ClusterNode, and hooks routing into the router (forwarding), Raft into the put path
 * (`appendHook`), the commit offset into reads (`readLimit`), leaders into `meta` replies, and
 * adds `stats cluster` and the `cluster` admin command.
 */
import * as process from "node:process";
import { result } from "../broker/broker.ts";
import { extraStatsItems } from "../broker/stats_report.ts";
import type { BrokerPlugin, RunningBroker } from "../server/start_broker.ts";
import type { ClusterSettings } from "./cluster_config.ts";
import { ClusterNode } from "./cluster_node.ts";
import { Forwarder } from "./forwarding.ts";
import { loadMembership } from "./membership.ts";
import { ClusterRouting } from "./routing.ts";
import { clusterStatus, statusLines } from "./status.ts";
import { fileTracer, NO_TRACE } from "./trace.ts";

export interface ClusterPlugin extends BrokerPlugin {
  node?: ClusterNode;
}

export function clusterPlugin(settings: ClusterSettings): ClusterPlugin {
  let forwarder: Forwarder | undefined;
  const plugin: ClusterPlugin = {
    name: "cluster",
    async start(running: RunningBroker) {
      const { logger, clock } = running;
      const storage = running.store.options.storage;
      const membership = await loadMembership(
        storage,
        running.config.system.dataPath,
        settings.nodeId,
      );
      const traceFile = process.env.METAQ_TEST_TRACE;
      const node = new ClusterNode({
        settings,
        running,
        membership,
        tracer: traceFile ? fileTracer(traceFile, settings.nodeId) : NO_TRACE,
        logger,
        clock,
      });
      forwarder = new Forwarder(node, running.router, logger);
      const routing = new ClusterRouting(node, forwarder);
      running.router.intercept = (command, context, respond) =>
        routing.intercept(command, context, respond);
      running.broker.appendHook = (put, done) => routing.append(put, done);
      running.broker.readLimit = (topic, partition, log) => {
        const replica = node.replica(topic, partition);
        if (replica) return replica.commitOffset;
        return node.hosts(topic, partition) ? log.startOffset : log.ackedEnd;
      };
      running.broker.metadataDecorator = (metadata) => ({
        ...metadata,
        leaders: leadersOf(node, metadata.topic, metadata.partitions),
      });
      extraStatsItems.set("cluster", () => statusLines(clusterStatus(node)));
      running.router.addExtension("cluster", {
        spec: { args: 1 },
        handle(command, _context, respond) {
          if (command.args[0] !== "status") {
            return respond(result(400, `Cannot run cluster ${command.args[0]}: expected status`));
          }
          respond(result(200, JSON.stringify(clusterStatus(node))));
        },
      });
      await node.start();
      running.facts.set("peerPort", node.peerPort);
      running.facts.set("nodeId", settings.nodeId);
      plugin.node = node;
    },
    async stop() {
      forwarder?.close();
      await plugin.node?.close();
      extraStatsItems.delete("cluster");
    },
  };
  return plugin;
}

function leadersOf(node: ClusterNode, topic: string, partitions: number): Record<string, string> {
  const leaders: Record<string, string> = {};
  for (let partition = 0; partition < partitions; partition++) {
    const leader = node.leaderOf(`${topic}-${partition}`);
    const address = leader?.clientAddress ??
      (leader ? node.clientAddressOf(leader.nodeId) : undefined);
    if (address) leaders[String(partition)] = address;
  }
  return leaders;
}
