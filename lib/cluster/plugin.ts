/**
 * @module The broker plugin that turns a node into a cluster member: loads its identity, starts
 * the ClusterNode, and hooks routing into the router (forwarding), Raft into the put path
 * (`appendHook`), the commit offset into reads (`readLimit`), leaders into `meta` replies, and
 * adds `stats cluster` and the `cluster` admin command.
 */
import process from "node:process";
import { type Reply, result } from "../protocol/reply.ts";
import type { Command } from "../protocol/commands.ts";
import { Parser } from "../protocol/parser.ts";
import type { RangeDigest } from "./cross_check.ts";
import { digestOf } from "./log_digest.ts";
import { BrokerError, describeError } from "../errors.ts";
import { extraStatsItems } from "../broker/stats_report.ts";
import type { BrokerPlugin, RunningBroker } from "../server/start_broker.ts";
import type { ClusterSettings } from "./cluster_config.ts";
import { ClusterGroups } from "./cluster_groups.ts";
import { ClusterNode } from "./cluster_node.ts";
import { Forwarder } from "./forwarding.ts";
import { loadMembership } from "./membership.ts";
import { readStartupState } from "./startup_state.ts";
import { isInternalTopic } from "./placement.ts";
import { ClusterRouting } from "./routing.ts";
import { clusterStatus, statusLines } from "./status.ts";
import { fileTracer, NO_TRACE } from "./trace.ts";

export interface ClusterPlugin extends BrokerPlugin {
  node?: ClusterNode;
  /** Consumer groups, coordinated by the `__meta-0` leader. */
  groups?: ClusterGroups;
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
      const startup = await readStartupState(storage, running.config.system.dataPath);
      const traceFile = process.env.METAQ_TEST_TRACE;
      const node = new ClusterNode({
        settings,
        running,
        membership,
        tracer: traceFile ? fileTracer(traceFile, settings.nodeId) : NO_TRACE,
        logger,
        clock,
        startup,
      });
      forwarder = new Forwarder(node, running.router, logger);
      node.askDigest = askDigestThrough(forwarder);
      const routing = new ClusterRouting(node, forwarder);
      running.router.intercept = (command, context, respond) =>
        routing.intercept(command, context, respond);
      running.broker.appendHook = (put, done) => routing.append(put, done);
      running.broker.readLimit = (topic, partition, log) => {
        const replica = node.replica(topic, partition);
        if (replica) return replica.commitOffset;
        return node.hosts(topic, partition) ? log.startOffset : log.ackedEnd;
      };
      running.maintenance.retentionGuard = (topic, partition) => {
        if (isInternalTopic(topic)) return undefined; // __meta is replayed from its start
        const replica = node.replica(topic, partition);
        return replica ? (offset) => replica.compactTo(offset) : undefined;
      };
      running.broker.metadataDecorator = (metadata) => ({
        ...metadata,
        leaders: leadersOf(node, metadata.topic, metadata.partitions),
      });
      extraStatsItems.set("cluster", () => statusLines(clusterStatus(node)));
      running.router.addExtension("cluster", {
        spec: { args: 2 },
        handle(command, _context, respond) {
          void clusterCommand(node, command.args[0], command.args[1]).then(
            (text) => respond(result(200, text)),
            (error) =>
              respond(
                result(error instanceof BrokerError ? error.status : 500, describeError(error)),
              ),
          );
        },
      });
      const groups = new ClusterGroups(node);
      groups.install();
      node.describeOffsets = () => groups.offsetsSummary();
      plugin.groups = groups;
      await node.start();
      running.facts.set("peerPort", node.peerPort);
      running.facts.set("nodeId", settings.nodeId);
      plugin.node = node;
    },
    async stop() {
      await plugin.groups?.stop();
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

/** Asks a peer for a digest through forwarding; undefined when it fails or does not answer. */
function askDigestThrough(forwarder: Forwarder): NonNullable<ClusterNode["askDigest"]> {
  return (peer, group, from, to) =>
    new Promise((resolve) => {
      const command: Command = {
        kind: "extension",
        verb: "cluster",
        args: ["digest", `${group},${from},${to}`],
        opaque: 0,
        body: new Uint8Array(0),
      };
      forwarder.forward(peer, command, (reply) => resolve(digestFromReply(reply)));
    });
}

function digestFromReply(reply: Reply): RangeDigest | undefined {
  if (reply.kind !== "frame") return undefined;
  const parser = new Parser({ bodyBytesMax: 1 << 20 });
  const answer = parser.push(reply.bytes).commands[0];
  if (answer?.kind !== "result" || answer.code !== 200) return undefined;
  try {
    const digest = JSON.parse(new TextDecoder().decode(answer.body));
    return typeof digest.start === "number" && typeof digest.end === "number" ? digest : undefined;
  } catch {
    return undefined;
  }
}

/** `cluster status|scrub|replace|digest <arg>`: the admin side of `metaq cluster`. */
async function clusterCommand(node: ClusterNode, action: string, arg: string): Promise<string> {
  switch (action) {
    case "status":
      return JSON.stringify(clusterStatus(node));
    case "scrub":
      return JSON.stringify(await node.scrub());
    case "digest": {
      // `<group>,<from>,<to>`: a peer's scrub comparing its copy with this one.
      const [group, from, to] = arg.split(",");
      const replica = node.replicaNamed(group);
      const [start, end] = [Number(from), Number(to)];
      if (!replica) throw new BrokerError("notFound", `node ${node.nodeId} holds no ${group}`);
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) {
        throw new BrokerError("badRequest", `bad digest range '${arg}'`);
      }
      return JSON.stringify(digestOf(replica.log, replica.commitOffset, start, end));
    }
    case "replace": {
      const id = Number(arg);
      const peer = node.peerInfos().find((info) => info.nodeId === id);
      if (!Number.isInteger(id) || !node.voters.includes(id)) {
        throw new BrokerError("badRequest", `node ${arg} is not a voter`);
      }
      if (!peer) {
        throw new BrokerError(
          "unavailable",
          `node ${id} has not introduced itself to node ${node.nodeId}; start it first`,
        );
      }
      node.membership.replace(id, peer.uuid);
      return JSON.stringify({ replaced: id, uuid: peer.uuid });
    }
    default:
      throw new BrokerError(
        "badRequest",
        `unknown cluster action '${action}' (expected status, scrub, replace or digest)`,
      );
  }
}
