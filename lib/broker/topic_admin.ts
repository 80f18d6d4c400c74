/**
 * @module Creating, growing and deleting topics (`metaq topics create|delete`, `POST` and
 * `DELETE /v1/topics`), over the wire as one admin verb:
 *
 * ```text
 * catalogue create <name> <partitions|-> <opaque>   -> 200 {"topic","partitions","previous","changed"}
 * catalogue delete <name> - <opaque>                -> 200 {"topic","deleted":true,"partitionsRemoved"}
 * ```
 *
 * A change is checked against the topic as this broker sees it (configuration and catalogue),
 * then committed to the catalogue (topic_catalogue.ts): to its file on a broker that runs alone,
 * to `__cluster-0` on a cluster, where the verb is served by that group's leader (the edge
 * forwards it there) and every node applies the record. `-` as the count: the count the topic
 * has, or the configured default for a new one.
 *
 * Deleting removes the topic's partitions at once: their logs close and their files are deleted
 * (not kept). On a cluster every node does so when it applies the record; a name deleted on a
 * cluster is not used again (a node that was away may still hold the old copies until it hears of
 * the delete, and a new group with the same name must not meet them). Every consumer group's
 * committed offsets of the topic are removed after it (`forgettopic`, on the node coordinating
 * groups): a topic created again under the name starts its partitions at 0.
 */
import { defaultTopicSettings, topicSettings } from "../config/config.ts";
import { topicNameProblem } from "../config/names.ts";
import { BrokerError, describeError } from "../errors.ts";
import type { ExtensionCommand } from "../protocol/commands.ts";
import { type CommandTable, HERE, type Home } from "../protocol/command_table.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import type { Logger } from "../log.ts";
import { isInternalTopic } from "../store/log.ts";
import type { Broker } from "./broker.ts";
import type { CatalogueStore } from "./topic_catalogue_file.ts";
import { shrinkRefusal, type TopicRecord } from "../config/topic_catalogue.ts";

export const TOPIC_VERB = "catalogue";

export interface TopicCreated {
  readonly topic: string;
  readonly partitions: number;
  /** Partitions it had before (0: it did not exist). */
  readonly previous: number;
  /** Whether it came into being, grew, or had partitions made (false: nothing to do). */
  readonly changed: boolean;
}

export interface TopicDeleted {
  readonly topic: string;
  readonly deleted: true;
  /**
   * Partitions whose logs and files were removed; null on a cluster, where every node removes
   * its copies when it applies the delete (after this answer, on the other nodes).
   */
  readonly partitionsRemoved: number | null;
  /** Committed group offsets removed with it; null when they could not be (a warning says why). */
  readonly offsetsRemoved: number | null;
}

export interface TopicAdminOptions {
  readonly broker: Broker;
  readonly store: CatalogueStore;
  /** Whether the catalogue is a cluster's (deleted names are not used again). */
  readonly replicated: boolean;
  /**
   * Removes this node's partitions of a deleted topic (closes the logs, deletes the files);
   * returns how many. A cluster node does it when it applies the record, not here.
   */
  readonly dropPartitions?: (topic: string) => Promise<number>;
  /** Removes every consumer group's committed offsets of `topic`; returns how many. */
  readonly forgetOffsets?: (topic: string) => Promise<number>;
  readonly logger?: Logger;
}

export class TopicAdmin {
  readonly #options: TopicAdminOptions;

  constructor(options: TopicAdminOptions) {
    this.#options = options;
  }

  async create(topic: string, partitions: number | undefined): Promise<TopicCreated> {
    const { broker, store } = this.#options;
    checkName(topic, "create");
    await store.ready?.();
    const catalogue = store.catalogue();
    if (!catalogue) {
      throw new BrokerError("unavailable", "the topic catalogue is not read yet; try again");
    }
    const entry = catalogue.entry(topic);
    if (entry?.deleted && this.#options.replicated) {
      throw BrokerError.verbatim(
        "conflict",
        `Cannot create topic ${topic}: a topic of that name was deleted on this cluster, and a ` +
          "node that was away may still hold its old copies; choose another name",
      );
    }
    const settings = broker.topicSettings(topic);
    const existed = settings !== undefined && broker.topicExists(topic);
    const previous = existed ? settings.numPartitions : 0;
    const fallback = topicSettings(broker.config, topic) ??
      defaultTopicSettings(broker.config, topic);
    const count = partitions ?? settings?.numPartitions ?? fallback.numPartitions;
    if (settings && count < settings.numPartitions) {
      throw BrokerError.verbatim("badRequest", shrinkRefusal(topic, settings.numPartitions, count));
    }
    // A topic the configuration gives this count already needs no entry.
    if (entry?.partitions !== count && count !== settings?.numPartitions) {
      await this.#commit({ kind: "topic-create", name: topic, partitions: count });
    }
    // Alone, the partitions are made now (a cluster makes them where they are placed, on first
    // use), so that a limit the store enforces (maxPartitions, maxTopics) shows here.
    let opened = 0;
    if (!this.#options.replicated) {
      for (let partition = 0; partition < count; partition++) {
        // One refused as damaged at start-up stays refused (HTTP's create reports it).
        if (broker.logs.get(topic, partition) || broker.logs.failure(topic, partition)) continue;
        await broker.logs.open(topic, partition);
        opened++;
      }
    }
    return { topic, partitions: count, previous, changed: previous !== count || opened > 0 };
  }

  async delete(topic: string): Promise<TopicDeleted> {
    const { broker, store } = this.#options;
    checkName(topic, "delete");
    await store.ready?.();
    if (!store.catalogue()) {
      throw new BrokerError("unavailable", "the topic catalogue is not read yet; try again");
    }
    if (!broker.topicExists(topic)) {
      const deleted = broker.catalogueEntry(topic)?.deleted === true;
      throw BrokerError.verbatim(
        "topicNotFound",
        deleted
          ? `Cannot delete topic ${topic}: it is deleted already`
          : `Cannot delete topic ${topic}: no such topic (metaq topics lists them)`,
      );
    }
    await this.#commit({ kind: "topic-delete", name: topic });
    const drop = this.#options.dropPartitions;
    const partitionsRemoved = drop ? await drop(topic) : null;
    let offsetsRemoved: number | null = 0;
    try {
      offsetsRemoved = await this.#options.forgetOffsets?.(topic) ?? 0;
    } catch (error) {
      // The topic is deleted all the same; the offsets go with `metaq groups delete`.
      offsetsRemoved = null;
      this.#options.logger?.log("warn", "Topic deleted, its groups' offsets not removed", {
        topic,
        reason: describeError(error),
      });
    }
    return { topic, deleted: true, partitionsRemoved, offsetsRemoved };
  }

  /** Commits `record` once the catalogue as applied here says it can apply. */
  async #commit(record: TopicRecord): Promise<void> {
    const problem = this.#options.store.catalogue()?.problemWith(record);
    if (problem) {
      throw BrokerError.verbatim("badRequest", `Cannot change topic ${record.name}: ${problem}`);
    }
    await this.#options.store.commit(record);
  }
}

function checkName(topic: string, action: string): void {
  const problem = topicNameProblem(topic);
  if (problem) throw BrokerError.verbatim("invalidName", `Cannot ${action} topic: ${problem}`);
  if (isInternalTopic(topic)) {
    throw BrokerError.verbatim(
      "badRequest",
      `Cannot ${action} topic ${topic}: topics starting with '__' hold the broker's own state`,
    );
  }
}

/** The `catalogue` verb (MetaQ's decoder owns verbs starting with t); `home` is where it is served (a cluster: its metadata group's leader). */
export function topicCommands(admin: TopicAdmin, home: Home = HERE): CommandTable {
  return {
    [`ext:${TOPIC_VERB}`]: {
      spec: { args: 3 },
      home: () => home,
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        run(admin, command.args).then(
          (outcome) => respond(result(200, JSON.stringify(outcome))),
          (error) => respond(errorReply(BrokerError.from(error))),
        );
      },
    },
  };
}

async function run(
  admin: TopicAdmin,
  args: readonly string[],
): Promise<TopicCreated | TopicDeleted> {
  const [action, topic, count] = args;
  switch (action) {
    case "create": {
      if (count !== "-" && !/^\d{1,9}$/.test(count)) {
        throw BrokerError.verbatim(
          "badRequest",
          `Cannot create topic ${topic}: bad count '${count}'`,
        );
      }
      return await admin.create(topic, count === "-" ? undefined : Number(count));
    }
    case "delete":
      return await admin.delete(topic);
    default:
      throw new BrokerError(
        "badRequest",
        `unknown topic action '${action}' (expected create or delete)`,
      );
  }
}
