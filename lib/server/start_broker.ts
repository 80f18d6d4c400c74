/**
 * @module Assembles a running broker from a Config: store (with recovery), message ids, broker,
 * router, TCP listener and background upkeep. `metaq serve` and the integration tests use it;
 * it owns start-up order and the reverse order at shutdown.
 */
import process from "node:process";
import { Broker } from "../broker/broker.ts";
import { Maintenance } from "../broker/maintenance.ts";
import { registerMetadataCommand } from "../broker/metadata.ts";
import { type Clock, systemClock } from "../clock.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import { MessageIdGenerator } from "../protocol/message_id.ts";
import { MessageStore } from "../store/message_store.ts";
import type { Storage } from "../store/storage.ts";
import { FileStorage } from "../store/storage_file.ts";
import { instrumentationFromEnv, instrumentStorage } from "../store/storage_journal.ts";
import { AccessControl } from "../security/access.ts";
import { tlsFor } from "../security/tls.ts";
import { Router } from "./router.ts";
import { TcpServer } from "./tcp_server.ts";

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly storage?: Storage;
  /** Check every segment's checksums at open (default true; `--fast-boot` turns it off). */
  readonly verifyAll?: boolean;
  /** Cut damaged logs at the damage instead of refusing them (`--repair`). */
  readonly repair?: boolean;
  /** Hooks that add parts (transactions, groups, HTTP, cluster) before the port opens. */
  readonly plugins?: readonly BrokerPlugin[];
}

/** A part of the broker that starts after the store and stops before it. */
export interface BrokerPlugin {
  readonly name: string;
  start(running: RunningBroker): Promise<void> | void;
  stop?(): Promise<void> | void;
}

export interface RunningBroker {
  readonly config: Config;
  readonly broker: Broker;
  readonly router: Router;
  readonly store: MessageStore;
  readonly maintenance: Maintenance;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Client port actually bound. */
  port: number;
  /** Extra facts plugins publish (for example the HTTP port). */
  readonly facts: Map<string, string | number>;
  close(): Promise<void>;
}

export async function startBroker(options: StartOptions): Promise<RunningBroker> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const store = await MessageStore.open({
    storage: options.storage ??
      instrumentStorage(new FileStorage(), instrumentationFromEnv(process.env)),
    config,
    clock,
    logger,
    verifyAll: options.verifyAll ?? true,
    repair: options.repair ?? false,
  });
  const ids = new MessageIdGenerator({ brokerId: config.system.brokerId, clock });
  if (store.lastRecoveredId !== undefined) ids.observe(store.lastRecoveredId);
  const broker = new Broker({ config, store, ids, clock, logger });
  const router = new Router(broker);
  registerMetadataCommand(router);
  const maintenance = new Maintenance(broker, clock, logger);
  const plugins = options.plugins ?? [];
  const started: BrokerPlugin[] = [];
  let server: TcpServer | undefined;
  let closing: Promise<void> | undefined;

  const running: RunningBroker = {
    config,
    broker,
    router,
    store,
    maintenance,
    logger,
    clock,
    port: 0,
    facts: new Map(),
    close: () => closing ??= shutdown(),
  };

  async function shutdown(): Promise<void> {
    maintenance.stop();
    await server?.close();
    for (const plugin of [...started].reverse()) await plugin.stop?.();
    await store.close();
  }

  try {
    for (const plugin of plugins) {
      await plugin.start(running);
      started.push(plugin);
    }
    const system = config.system;
    server = new TcpServer({
      router,
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
    broker.connectionCount = () => server?.connectionCount ?? 0;
    running.port = await server.listen();
    broker.setListenAddress(config.system.host, running.port);
    maintenance.start();
    return running;
  } catch (error) {
    await running.close().catch(() => {});
    throw error;
  }
}
