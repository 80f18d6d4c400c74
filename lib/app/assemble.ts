/**
 * @module The composition root: a Config in, a running broker out. Every part is built here,
 * in dependency order, and handed its collaborators in its constructor; no part sets a field of
 * another. The order of the code below is the order of the parts:
 *
 * ```text
 * storage → message store → Logs (LocalLogs, or the ClusterNode's ReplicatedLogs)
 *         → Broker → consumer groups, transactions, delayed messages, cluster commands
 *         → Router (command table)
 *         → Edge (+ Forwarder in a cluster) → TCP server, HTTP → ZooKeeper registration → upkeep
 *         → uplink (an edge)
 * ```
 *
 * Start-up runs in that order and shutdown in the reverse. A few parts need something that is
 * built after them (the edge serves requests forwarded from other nodes, the cluster node hands
 * frames to the forwarder); those are passed as functions closing over variables of this file,
 * set before anything can call them.
 */
import process from "node:process";
import { Broker } from "../broker/broker.ts";
import { brokerCommands } from "../broker/commands.ts";
import { GroupFilters } from "../broker/groups/group_filters.ts";
import { GroupsPart, OFFSETS_TOPIC } from "../broker/groups/groups_part.ts";
import { Maintenance } from "../broker/maintenance.ts";
import type { StatsItems } from "../broker/stats_report.ts";
import { TX_TOPIC, TxPart } from "../broker/tx/tx_part.ts";
import { TopicAdmin, topicCommands } from "../broker/topic_admin.ts";
import { type CatalogueStore, TopicCatalogueFile } from "../broker/topic_catalogue_file.ts";
import { DELAY_TOPIC, DelayedPart } from "../broker/delayed/delayed_part.ts";
import type { Clock } from "../clock.ts";
import { clockFromEnv } from "../clock_offset.ts";
import { clusterSettings } from "../cluster/cluster_config.ts";
import type { ClusterNode } from "../cluster/cluster_node.ts";
import { zooKeeperEnabled } from "../config/zookeeper_config.ts";
import { type Config, ConfigError, topicSettings } from "../config/config.ts";
import type { HttpPart } from "../http/http_part.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "../http/wire_reply.ts";
import { errorFromResult } from "../protocol/reply.ts";
import { BrokerError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { LogRing } from "../log_ring.ts";
import { Prng } from "../prng.ts";
import type { CommandTable } from "../protocol/command_table.ts";
import { MessageIdGenerator } from "../protocol/message_id.ts";
import { AccessControl } from "../security/access.ts";
import { clusterSecretOf, tlsFor } from "../security/tls.ts";
import { Edge } from "../server/edge.ts";
import type { Forwarder } from "../server/forwarder.ts";
import { Router } from "../server/router.ts";
import { TcpServer } from "../server/tcp_server.ts";
import { LocalLogs } from "../store/local_logs.ts";
import type { Logs } from "../store/log.ts";
import { MessageStore } from "../store/message_store.ts";
import { flushPolicyOf } from "../store/partition_log.ts";
import { SyncModeChooser } from "../store/sync_mode.ts";
import type { Storage } from "../store/storage.ts";
import { FileStorage } from "../store/storage_file.ts";
import { systemTimers, type Timers } from "../timers.ts";
import { instrumentationFromEnv, instrumentStorage } from "../store/storage_journal.ts";
import { uplinkHubCommands } from "../uplink/hub_commands.ts";
import type { UplinkPart } from "../uplink/uplink_part.ts";
import type * as ClusterImports from "./cluster_imports.ts";
import { migrateGroupOffsets } from "./migrate.ts";
import { edgeWriter } from "./partition_writer.ts";

export interface AssembleOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly storage?: Storage;
  /** Check every segment's checksums at open (default true; `--fast-boot` turns it off). */
  readonly verifyAll?: boolean;
  /** Cut damaged logs at the damage instead of refusing them (`--repair`). */
  readonly repair?: boolean;
  /** Recent warnings and errors, for the dashboard. */
  readonly recentLog?: LogRing;
  /** `node` forces the portable node:http listener (tests). */
  readonly httpEngine?: "auto" | "node";
  /** Commands of parts built outside lib/ (tests, embedders), added to the table. */
  readonly extraCommands?: readonly CommandTable[];
  /** TEST ONLY: see TxPart (METAQ_TEST_CRASH_AFTER_COMMIT_BYTES). */
  readonly crashAfterCommitBytes?: number;
  readonly crash?: () => void;
  /** TEST ONLY: see DelayedPart (METAQ_TEST_DELAY_CRASH_AFTER_FIRINGS); uses `crash`. */
  readonly delayCrashAfterFirings?: number;
  /** Timers of the delayed-messages part (tests pair them with a faster clock). */
  readonly timers?: Timers;
}

/** A broker running: its parts (for tests and the CLI) and how to stop it. */
export interface App {
  readonly config: Config;
  readonly broker: Broker;
  readonly logs: Logs;
  readonly store: MessageStore;
  readonly groups: GroupsPart;
  readonly transactions: TxPart;
  readonly delayed: DelayedPart;
  readonly cluster: ClusterNode | undefined;
  readonly edge: Edge;
  readonly maintenance: Maintenance;
  /** The uplink to a hub, on an edge broker (`[uplink]`, `--uplink`). */
  readonly uplink: UplinkPart | undefined;
  /** Client port actually bound. */
  readonly port: number;
  /** HTTP port actually bound, when HTTP is on. */
  readonly httpPort: number | undefined;
  /** This node's peer port, in a cluster. */
  readonly peerPort: number | undefined;
  close(): Promise<void>;
}

/** Something started that must be stopped, newest first. */
type Stop = () => Promise<void> | void;

export async function assemble(options: AssembleOptions): Promise<App> {
  const { config, logger } = options;
  const system = config.system;
  // The one place the broker gets its wall clock (a test build may skew it: clock_offset.ts).
  const clock = options.clock ?? clockFromEnv(process.env);
  const settings = clusterSettings(config);
  const filters = new GroupFilters(config, (topic) => topicSettings(config, topic)?.groupFilters);
  const problems = filters.problems();
  if (problems.length > 0) throw new ConfigError(problems[0]);
  if (config.uplink && settings) {
    throw new ConfigError(
      "Cannot run an uplink on a cluster node: run it on a broker that runs alone",
    );
  }
  const stops: Stop[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    // Storage and the segment logs.
    const storage = options.storage ??
      instrumentStorage(new FileStorage(), instrumentationFromEnv(process.env));
    const store = await MessageStore.open({
      storage,
      config,
      clock,
      logger,
      verifyAll: options.verifyAll ?? true,
      repair: options.repair ?? false,
      // The transaction journal is synced as flushTxLogAtCommit says (1: before every reply).
      // On a cluster, `fsync` decides for the partitions: synced before a copy counts, or
      // written at once and synced within the interval; the broker's own logs always sync.
      flushFor: (topic) =>
        topic === TX_TOPIC && system.flushTxLogAtCommit !== 1 && !settings
          ? flushPolicyOf(Number.MAX_SAFE_INTEGER, 1000)
          : topic.startsWith("__")
          ? { kind: "group" }
          : settings?.fsync.kind === "interval"
          ? flushPolicyOf(Number.MAX_SAFE_INTEGER, settings.fsync.intervalMs)
          : settings
          ? { kind: "group" }
          : undefined,
      // A cluster node never fsyncs on its event loop: that loop also sends every group's
      // heartbeats, and one fsync stalled by the disk would stall them all, long enough for
      // followers to elect new leaders. (A chaos run of T09 saw every group elect at once after
      // inline syncs were allowed more often; that this was the cause is likely, not proven.)
      // A single broker's inline sync only delays its own clients, as Redis's does.
      syncModes: settings ? new SyncModeChooser({ busy: () => true }) : undefined,
    });
    stops.push(() => store.close());
    const ids = new MessageIdGenerator({ brokerId: system.brokerId, clock });
    if (store.lastRecoveredId !== undefined) ids.observe(store.lastRecoveredId);

    // Built below, used by functions the parts above them call later (never before).
    const late: {
      edge?: Edge;
      forwarder?: Forwarder;
      server?: TcpServer;
      http?: HttpPart;
      port: number;
    } = { port: 0 };

    // The Logs: local segment logs, or this node's copies in a Raft-lite cluster.
    let cluster: ClusterNode | undefined;
    let logs: Logs;
    // Loaded only on a cluster node (start-up time: a broker alone never loads Raft).
    const clusterLib = settings ? await import("./cluster_imports.ts") : undefined;
    if (settings && clusterLib) {
      const { ClusterNode, fileTracer, loadMembership, NO_TRACE, PeerTransport, readStartupState } =
        clusterLib;
      const traceFile = process.env.METAQ_TEST_TRACE;
      const self = settings.peers.find((peer) => peer.id === settings.nodeId)!;
      cluster = new ClusterNode({
        settings,
        config,
        store,
        membership: await loadMembership(storage, system.dataPath, settings.nodeId),
        startup: await readStartupState(storage, system.dataPath),
        tracer: traceFile ? fileTracer(traceFile, settings.nodeId) : NO_TRACE,
        logger,
        clock,
        timers: systemTimers,
        random: new Prng(Number(process.pid) * 7919 + settings.nodeId),
        incarnation: crypto.randomUUID(),
        network: (handlers) =>
          new PeerTransport({
            ...handlers,
            nodeId: settings.nodeId,
            host: system.host === "0.0.0.0" ? "0.0.0.0" : self.host,
            port: self.port,
            peers: settings.peers,
            logger,
            secret: clusterSecretOf(system),
            tls: tlsFor(system, "peer"),
          }),
        ids,
        accepts: (topic) => topic.startsWith("__") || broker.topicSettings(topic) !== undefined,
        clientAddress: () => `${system.hostName || system.host}:${late.port}`,
        httpPort: () => late.http?.port,
        onForwarded: (from, frame) => late.forwarder?.receive(from, frame),
        onPeerGone: (node) => late.forwarder?.peerGone(node),
        figuresOf: (group) => clusterLib.groupFigures(broker, clock, group),
      });
      logs = cluster;
    } else {
      logs = new LocalLogs(store, logger);
    }
    // Topics created, grown and deleted by an operator: in the cluster's metadata, or alone in a
    // file beside the partitions (topic_catalogue_file.ts says why a file).
    const catalogues: CatalogueStore = cluster
      ? {
        // A new cluster writes its first metadata record just after its first election.
        ready: () => cluster!.metadata?.whenInitialized(5_000) ?? Promise.resolve(false),
        catalogue: () => {
          const state = cluster!.metadata?.state;
          return state?.initialized ? state.topics : undefined;
        },
        commit: async (record) => {
          const metadata = cluster!.metadata;
          if (!metadata) {
            throw new BrokerError("unavailable", "the cluster's metadata is not open yet");
          }
          await metadata.propose(record);
        },
      }
      : TopicCatalogueFile.open(storage, system.dataPath);

    // The broker and its parts.
    const broker = new Broker({
      config,
      logs,
      ids,
      clock,
      logger,
      random: new Prng(Number(process.pid) * 7919 + system.brokerId),
      filterFor: (topic, group) => filters.filterFor(topic, group),
      connectionCount: () => late.server?.connectionCount ?? 0,
      catalogue: () => catalogues.catalogue(),
    });
    const topicAdmin = new TopicAdmin({
      broker,
      store: catalogues,
      replicated: cluster !== undefined,
      dropPartitions: logs instanceof LocalLogs
        ? (topic) => (logs as LocalLogs).dropTopic(topic)
        : undefined,
      // Sent through the edge: the node coordinating groups may be another one.
      forgetOffsets: async (topic) => {
        const answer = await ask(
          (command, respond) => late.edge!.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
          {
            kind: "extension",
            verb: "forgettopic",
            args: [topic],
            opaque: 0,
            body: new Uint8Array(0),
          },
        );
        if (answer.kind !== "result") throw new BrokerError("internal", "forgettopic: a value");
        if (answer.code !== 200) throw errorFromResult(answer.code, answer.text);
        return (JSON.parse(answer.text) as { offsets: unknown[] }).offsets.length;
      },
      logger,
    });
    filters.warnAboutJavaClasses(logger);
    const groups = new GroupsPart({
      config,
      broker,
      logs,
      ids,
      clock,
      logger,
      waitForLog: !cluster,
      replicated: cluster !== undefined,
      boundsElsewhere: cluster && clusterLib
        ? (topic, partition) => leaderBounds(cluster!, clusterLib.decodeFigures, topic, partition)
        : undefined,
      askBounds: cluster ? (topic, partition) => cluster!.askBounds(topic, partition) : undefined,
      migrate: cluster
        ? undefined
        : (write) => migrateGroupOffsets({ storage, config, logger, write }),
    });
    const transactions = new TxPart({
      broker,
      logs,
      ids,
      clock,
      logger,
      nodeId: settings?.nodeId ?? 0,
      writer: edgeWriter({ requests: () => late.edge!, logs, local: cluster ? undefined : store }),
      snapshotEveryBytes: Math.max(1, Math.floor(system.metaSegmentSize / 4)),
      waitForLog: !cluster,
      crashAfterCommitBytes: options.crashAfterCommitBytes,
      crash: options.crash,
    });
    const delayed = new DelayedPart({
      broker,
      logs,
      ids,
      clock,
      timers: options.timers ?? systemTimers,
      logger,
      writer: edgeWriter({ requests: () => late.edge!, logs }),
      waitForLog: !cluster,
      crashAfterFirings: options.delayCrashAfterFirings,
      crash: options.crash,
    });
    const uplink = config.uplink
      ? new (await import("../uplink/uplink_part.ts")).UplinkPart({
        uplink: config.uplink,
        logs,
        partitionsOf: (topic) => broker.topicSettings(topic)?.numPartitions ?? 0,
        ids,
        clock,
        logger,
        random: new Prng(Number(process.pid) * 104729 + system.brokerId),
        snapshotEveryBytes: Math.max(1, Math.floor(system.metaSegmentSize / 4)),
      })
      : undefined;
    const statsItems: StatsItems = new Map([
      ["transactions", () => transactions.statsLines()],
      ["delayed", () => delayed.statsLines()],
      ...(uplink ? [["uplink", () => uplink.statsLines()] as const] : []),
      ...(cluster && clusterLib
        ? [
          [
            "cluster",
            () => clusterLib.clusterStatsLines(cluster!, () => groups.offsetsSummary()),
          ] as const,
        ]
        : []),
    ]);
    const tables: CommandTable[] = [
      brokerCommands(broker, {
        statsItems: () => statsItems,
        leaders: cluster
          ? (topic, partitions) => leadersOf(cluster!, topic, partitions)
          : undefined,
      }),
      groups.commands,
      transactions.commands,
      delayed.commands,
      uplinkHubCommands(broker),
      topicCommands(
        topicAdmin,
        clusterLib ? { kind: "leader", topic: clusterLib.CLUSTER_TOPIC, partition: 0 } : undefined,
      ),
    ];
    if (cluster && clusterLib) {
      const { clusterCommands, INTERNAL_TOPICS } = clusterLib;
      tables.push(clusterCommands(
        cluster,
        () => groups.offsetsSummary(),
        (topic) => INTERNAL_TOPICS.includes(topic) ? 1 : broker.topicSettings(topic)?.numPartitions,
      ));
    }
    tables.push(...options.extraCommands ?? []);
    const router = new Router(tables, [(context) => transactions.connectionClosed(context)]);

    // The edge: every request passes here; in a cluster it forwards to the serving node.
    const forwarder = cluster && clusterLib
      ? new clusterLib.Forwarder({
        link: cluster,
        placement: cluster,
        serve: (command, context, respond) => late.edge!.dispatch(command, context, respond),
        extensionSpecs: () => router.extensionSpecs,
        remoteClosed: (context) => router.connectionClosed(context),
        logger,
        timers: systemTimers,
      })
      : undefined;
    late.forwarder = forwarder;
    const edge = late.edge = new Edge({
      router,
      cluster: cluster && forwarder ? { placement: cluster, forwarder } : undefined,
      now: () => clock.monotonicMs(),
    });

    // Start-up, in order: the cluster's peer port and copies, the parts' logs, then the ports.
    if (cluster) {
      await cluster.start();
      stops.push(async () => {
        forwarder?.close();
        await cluster!.close();
      });
    }
    if (!cluster) {
      // The parts' logs are opened together first, so that on a new data directory their
      // directory fsyncs overlap (start-up: 6 fsyncs one after another were most of the time
      // before `listen`). Each part then finds its log open and attaches and recovers in the order
      // below; a log refused as damaged is refused to its part again there, as before.
      await Promise.allSettled(
        [OFFSETS_TOPIC, TX_TOPIC, DELAY_TOPIC].map((topic) => logs.open(topic, 0)),
      );
    }
    await groups.start();
    stops.push(() => groups.stop());
    await transactions.start();
    stops.push(() => transactions.stop());
    await delayed.start();
    stops.push(() => delayed.stop());
    await uplink?.prepare();
    const server = late.server = new TcpServer({
      requests: edge,
      counters: broker.stats.counters,
      host: system.host,
      port: system.serverPort,
      logger,
      bodyBytesMax: system.maxMessageSize,
      pendingMax: system.maxPendingRequests,
      outputBytesMax: system.maxConnectionBufferBytes,
      connectionsMax: system.maxConnections,
      connectionsPerIpMax: system.maxConnectionsPerIp,
      lineBytesMax: system.maxCommandLineBytes,
      idleTimeoutMs: system.idleTimeoutMs,
      frameTimeoutMs: system.frameTimeoutMs,
      access: new AccessControl(config.users),
      maxAuthFailures: system.maxAuthFailures,
      tls: tlsFor(system, "client"),
    });
    const port = late.port = await server.listen();
    stops.push(() => server.close());
    // Runs before the server's close: long polls answer at once instead of holding it open.
    stops.push(() => broker.stopWaiting());
    broker.listening(system.host, port);
    let http: HttpPart | undefined;
    if (system.httpEnabled) {
      // Loaded only when HTTP is on (Hono and the dashboard page are a large part of the code).
      const { clusterView, groupsOverWire, HttpPart } = await import("./http_imports.ts");
      http = late.http = new HttpPart({
        broker,
        requests: edge,
        groups: groupsOverWire(edge),
        cluster: cluster ? clusterView(() => cluster) : undefined,
        uplink,
        delayed,
        statsItems,
        access: new AccessControl(config.users),
        clock,
        host: system.host,
        port: system.dashboardHttpPort,
        tls: tlsFor(system, "http"),
        recentLog: options.recentLog,
        engine: options.httpEngine,
      });
      await http.start();
      stops.push(() => http!.stop());
    }
    // Registered once every port serves; unregistered first at shutdown (docs/zookeeper.md).
    const registrar = zooKeeperEnabled(config.zookeeper)
      ? await (await import("./zookeeper_part.ts")).startZooKeeperPart({
        config,
        logs,
        cluster,
        port,
        logger,
        topicSettings: (topic) => broker.topicSettings(topic),
      })
      : undefined;
    if (registrar) stops.push(() => registrar.stop());
    const maintenance = new Maintenance({
      broker,
      logs,
      syncs: store,
      clock,
      logger,
      retentionFloor: uplink && ((topic, partition) => uplink.retentionFloor(topic, partition)),
    });
    maintenance.start();
    stops.push(() => maintenance.stop());
    if (uplink) {
      uplink.start();
      stops.push(() => uplink.stop());
    }

    let closing: Promise<void> | undefined;
    return {
      config,
      broker,
      logs,
      store,
      groups,
      transactions,
      delayed,
      cluster,
      edge,
      maintenance,
      uplink,
      port,
      httpPort: http?.port,
      peerPort: cluster?.peerPort,
      close: () => closing ??= stopAll(),
    };
  } catch (error) {
    await stopAll().catch(() => {});
    throw error;
  }
}

/** Partition -> client address of its leader, for `meta` replies in a cluster. */
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

/** A partition's bounds as its leader last shared them (NodeInfo figures), if it did. */
function leaderBounds(
  node: ClusterNode,
  decodeFigures: typeof ClusterImports.decodeFigures,
  topic: string,
  partition: number,
): { start: number; end: number } | undefined {
  const group = `${topic}-${partition}`;
  for (const info of node.peerInfos()) {
    const figures = info.figures?.[group];
    const decoded = figures ? decodeFigures(figures) : undefined;
    if (decoded) return { start: decoded.startOffset, end: decoded.endOffset };
  }
  return undefined;
}
