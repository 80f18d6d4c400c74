/**
 * @module The broker's registration in ZooKeeper, as MetaQ's BrokerZooKeeper makes it: its
 * address under `brokers/ids/<id>` (master or slave<n>, and the old clients' copy in the parent),
 * the config checksum, and for every topic it accepts the old `brokers/topics` node and the
 * `topics-pub` / `topics-sub` JSON; kept up to date when topics appear, written again on every new
 * ZooKeeper session, and removed at shutdown.
 *
 * It keeps a desired set of nodes (from the role and the topics) and makes ZooKeeper match it:
 * a node held by another session is taken over (deleted and created again by this session), so a
 * cluster's new leader replaces `master` at once instead of waiting out the old leader's session,
 * and a node this broker no longer wants is deleted only if this session holds it. A watch on
 * every node held brings it back if someone else removes it.
 */
import * as os from "node:os";
import type { Logger } from "../log.ts";
import type { WatchedEvent, ZkClient, ZkState } from "./client.ts";
import {
  type BrokerRole,
  brokerUri,
  MASTER,
  type MetaLayout,
  topicBrokerJson,
} from "./meta_layout.ts";
import { createEphemeral, deleteIfExists, writePersistent } from "./nodes.ts";
import { isZkError } from "./protocol.ts";

/** What ZooKeeper learns about one topic. */
export interface RegisteredTopic {
  readonly numPartitions: number;
  readonly acceptPublish: boolean;
  readonly acceptSubscribe: boolean;
}

export interface RegistrarOptions {
  readonly client: ZkClient;
  readonly layout: MetaLayout;
  /** The MetaQ broker id to register under. */
  readonly brokerId: number;
  readonly host: string;
  readonly port: number;
  /** CRC32 of server.ini, decimal (MetaConfig.getConfigFileChecksum). */
  readonly configChecksum: string;
  /** This broker's role now: master, or a slave (a cluster's follower). */
  readonly role: () => BrokerRole;
  /** Resolves when the role may have changed, or after `timeoutMs` (a cluster's role events). */
  readonly roleChanged?: (timeoutMs: number) => Promise<void>;
  /** Topics to register now (user topics only). */
  readonly topics: () => Iterable<string>;
  /** Calls back with every topic that appears later; returns an unsubscribe. */
  readonly onTopic: (listener: (topic: string) => void) => () => void;
  /** A topic's settings, or undefined when this broker does not accept it. */
  readonly topicSettings: (topic: string) => RegisteredTopic | undefined;
  /**
   * A single broker owns its id: a `master` held by another broker (another address) is a
   * configuration error, as it is for MetaQ. A cluster's nodes share one id and take it over.
   */
  readonly exclusive: boolean;
  /** Period of the safety-net check (zk.zkSyncTimeMs). */
  readonly checkEveryMs: number;
  readonly logger: Logger;
}

/** Another broker is registered under this broker's id. */
export class BrokerIdTakenError extends Error {
  override readonly name = "BrokerIdTakenError";
}

/** Attempts to take one node over before giving up until the next trigger. */
const CLAIM_ATTEMPTS_MAX = 5;
const RETRY_DELAY_MS = 1000;

export class BrokerRegistrar {
  readonly #options: RegistrarOptions;
  readonly #uri: string;
  /** Nodes this session holds with the data it wrote; cleared with every new session. */
  readonly #held = new Map<string, string>();
  readonly #topics = new Set<string>();
  #role: BrokerRole;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #unsubscribe: (() => void)[] = [];
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  readonly #onWatch = (event: WatchedEvent) => {
    // A node held was deleted or changed (by someone else, or by this broker's own release):
    // forget it, and put it back if it is still wanted.
    this.#held.delete(event.path);
    this.#trigger();
  };

  constructor(options: RegistrarOptions) {
    this.#options = options;
    this.#uri = brokerUri(options.host, options.port);
    this.#role = options.role();
  }

  /** `meta://host:port` as registered. */
  get uri(): string {
    return this.#uri;
  }

  get role(): BrokerRole {
    return this.#role;
  }

  /** Registers everything; throws when it cannot (the broker then does not start). */
  async start(): Promise<void> {
    const { client, topics, onTopic } = this.#options;
    for (const topic of topics()) this.#addTopic(topic);
    await this.#reconcile();
    this.#unsubscribe.push(onTopic((topic) => {
      if (this.#addTopic(topic)) this.#trigger();
    }));
    this.#unsubscribe.push(client.onState((state: ZkState) => {
      if (state === "session") {
        this.#options.logger.log("info", "ZooKeeper session renewed: registering again", {
          brokerId: this.#options.brokerId,
        });
        this.#held.clear();
        this.#trigger();
      }
    }));
    this.#loop = this.#watchRole();
  }

  /** Removes this broker's nodes (MetaQ's unregisterEveryThing) and ends the session. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    clearTimeout(this.#retry);
    this.#wake?.();
    await this.#loop;
    await this.#running?.catch(() => {});
    const { client, layout, brokerId, logger } = this.#options;
    try {
      for (const path of [...this.#held.keys()].reverse()) await this.#release(path);
      if (this.#role.kind === "master") {
        // The old clients' copy: MetaQ deletes the parent, or blanks it when slaves remain.
        const parent = layout.brokerIdPath(brokerId);
        try {
          await deleteIfExists(client, parent);
        } catch (error) {
          if (!isZkError(error, "notEmpty")) throw error;
          if (await this.#stillNobodysMaster()) await client.setData(parent, "");
        }
      }
    } catch (error) {
      logger.log("warn", "Cannot remove the broker's ZooKeeper registration", {
        error: String(error),
      });
    } finally {
      this.#held.clear();
      await client.close();
    }
  }

  /** Adds `topic` if this broker accepts it; true when it is new. */
  #addTopic(topic: string): boolean {
    if (topic.startsWith("__") || this.#topics.has(topic)) return false;
    if (!this.#options.topicSettings(topic)) return false;
    this.#topics.add(topic);
    return true;
  }

  /** Runs a reconciliation now, or once more after the one running. */
  #trigger(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#reconcile()
      .catch((error) => {
        this.#options.logger.log("warn", "Cannot update the ZooKeeper registration: retrying", {
          error: String(error),
        });
        clearTimeout(this.#retry);
        this.#retry = setTimeout(() => this.#trigger(), RETRY_DELAY_MS);
      })
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.#trigger();
        }
      });
  }

  /** Follows role changes (a cluster's leadership) and checks the registration now and then. */
  async #watchRole(): Promise<void> {
    const { roleChanged, checkEveryMs } = this.#options;
    while (!this.#stopped) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        if (roleChanged) roleChanged(checkEveryMs).then(resolve);
        else setTimeout(resolve, checkEveryMs);
      });
      if (this.#stopped) break;
      // A new role, or a node lost: reconcile. Costs nothing remote when all is held as wanted.
      this.#trigger();
    }
  }

  /** Makes ZooKeeper hold exactly the nodes this broker wants, for its current role. */
  async #reconcile(): Promise<void> {
    const role = this.#options.role();
    if (!sameRole(role, this.#role)) {
      this.#options.logger.log("info", "ZooKeeper registration changes role", {
        brokerId: this.#options.brokerId,
        role: roleName(role),
      });
      this.#role = role;
    }
    const wanted = this.#wanted(role);
    for (const path of [...this.#held.keys()]) {
      if (!wanted.has(path)) await this.#release(path);
    }
    const { client, layout, brokerId } = this.#options;
    const masterPath = layout.brokerPath(brokerId, MASTER);
    for (const [path, data] of wanted) {
      if (this.#held.get(path) === data) continue;
      await this.#claim(path, data, path === masterPath);
      if (path === masterPath) {
        // For clients before 1.4.3, the parent carries the master's address too.
        await writePersistent(client, layout.brokerIdPath(brokerId), this.#uri);
      }
    }
  }

  /** Path -> data of every ephemeral node this broker should hold, in registration order. */
  #wanted(role: BrokerRole): Map<string, string> {
    const { layout, brokerId, configChecksum, topicSettings } = this.#options;
    const wanted = new Map<string, string>();
    wanted.set(layout.brokerPath(brokerId, role), this.#uri);
    if (role.kind === "master") {
      wanted.set(layout.masterConfigChecksumPath(brokerId), configChecksum);
    }
    for (const topic of [...this.#topics].sort()) {
      const settings = topicSettings(topic);
      if (!settings) continue;
      const json = topicBrokerJson(settings.numPartitions, brokerId, role);
      wanted.set(layout.legacyTopicPath(topic, brokerId, role), String(settings.numPartitions));
      if (settings.acceptPublish) wanted.set(layout.topicPath("pub", topic, brokerId, role), json);
      if (settings.acceptSubscribe) {
        wanted.set(layout.topicPath("sub", topic, brokerId, role), json);
      }
    }
    return wanted;
  }

  /** Holds `path` with `data` in this session, taking it over from another session if need be. */
  async #claim(path: string, data: string, isMaster: boolean): Promise<void> {
    const { client, exclusive, brokerId } = this.#options;
    for (let attempt = 1; attempt <= CLAIM_ATTEMPTS_MAX; attempt++) {
      const stat = await client.exists(path, this.#onWatch);
      if (stat === undefined) {
        try {
          await createEphemeral(client, path, data);
        } catch (error) {
          if (isZkError(error, "nodeExists")) continue; // someone was quicker: look again
          throw error;
        }
        await client.exists(path, this.#onWatch);
        this.#held.set(path, data);
        return;
      }
      if (stat.ephemeralOwner === client.sessionId) {
        const current = await client.getData(path, this.#onWatch);
        if (decode(current.data) !== data) await client.setData(path, data);
        this.#held.set(path, data);
        return;
      }
      if (exclusive && isMaster) {
        const text = decode((await client.getData(path)).data);
        if (text !== data) {
          throw new BrokerIdTakenError(
            `Cannot register broker ${brokerId} in ZooKeeper: ${path} holds ${text}, another ` +
              `broker with this id (this one is ${data}); give each broker its own brokerId`,
          );
        }
      }
      // Left by this broker's previous process or by another node of its cluster: take it over.
      try {
        await client.delete(path, stat.version);
      } catch (error) {
        if (!isZkError(error, "noNode") && !isZkError(error, "badVersion")) throw error;
      }
    }
    throw new Error(`Cannot take over ${path}: it changed hands ${CLAIM_ATTEMPTS_MAX} times`);
  }

  /** Deletes `path` if this session still holds it (another node may have taken it over). */
  async #release(path: string): Promise<void> {
    const { client } = this.#options;
    this.#held.delete(path);
    const stat = await client.exists(path);
    if (stat === undefined || stat.ephemeralOwner !== client.sessionId) return;
    try {
      await client.delete(path, stat.version);
    } catch (error) {
      if (!isZkError(error, "noNode") && !isZkError(error, "badVersion")) throw error;
    }
  }

  async #stillNobodysMaster(): Promise<boolean> {
    const { client, layout, brokerId } = this.#options;
    return (await client.exists(layout.brokerPath(brokerId, MASTER))) === undefined;
  }
}

/**
 * The host a broker advertises: hostName when set, else the bind address, else (bound to every
 * interface) the first non-internal IPv4 address, as MetaQ's RemotingUtils.getLocalHost picks one.
 */
export function advertisedHost(hostName: string, bindHost: string): string {
  if (hostName !== "") return hostName;
  if (bindHost !== "" && bindHost !== "0.0.0.0" && bindHost !== "::") return bindHost;
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return os.hostname();
}

function decode(data: Uint8Array | null): string {
  return data === null ? "" : new TextDecoder().decode(data);
}

function sameRole(a: BrokerRole, b: BrokerRole): boolean {
  return a.kind === b.kind &&
    (a.kind === "master" || a.slaveId === (b as { slaveId: number }).slaveId);
}

function roleName(role: BrokerRole): string {
  return role.kind === "master" ? "master" : `slave${role.slaveId}`;
}
