/**
 * @module The topic catalogue: topics created, grown and deleted by an operator (`metaq topics
 * create|delete`, `POST`/`DELETE /v1/topics`), kept by the broker instead of server.ini. An entry
 * overrides what the configuration says of a topic: its partition count, or that it is deleted
 * (a deleted topic stays refused until it is created again, even when a section of server.ini
 * names or matches it). A topic without an entry is as the configuration says.
 *
 * The catalogue changes by records, applied in order; every node applying the same records holds
 * the same catalogue (on a cluster they are records of `__cluster-0`, lib/cluster/cluster_state.ts;
 * a broker that runs alone keeps the whole catalogue in one file,
 * lib/broker/topic_catalogue_file.ts). It sits with the configuration it overrides, where both
 * the broker and the cluster may read it.
 *
 * ```text
 * {"kind":"topic-create","name":"orders","partitions":8}   create, or grow to 8 partitions
 * {"kind":"topic-delete","name":"orders"}
 * ```
 *
 * Partition counts only grow: MetaQ addresses partitions by number and consumer groups keep
 * their offsets per partition, so dropping partition 7 would lose its messages and strand the
 * offsets of every group reading it. Pure: no I/O, no time, no configuration.
 */
import { PARTITIONS_PER_TOPIC_MAX } from "../limits.ts";
import { topicNameProblem } from "./names.ts";

/** What the catalogue says of one topic. */
export type CatalogueEntry =
  | { readonly partitions: number; readonly deleted?: undefined }
  | { readonly deleted: true; readonly partitions?: undefined };

export type TopicRecord =
  | { readonly kind: "topic-create"; readonly name: string; readonly partitions: number }
  | { readonly kind: "topic-delete"; readonly name: string };

/** The catalogue as JSON (snapshots, the catalogue file): name -> entry. */
export type CatalogueJson = Readonly<Record<string, CatalogueEntry>>;

/** Entries a catalogue holds at most, deleted ones included (a bound on its snapshot's size). */
export const CATALOGUE_ENTRIES_MAX = 100_000;

export class TopicCatalogue {
  #entries = new Map<string, CatalogueEntry>();
  /** Bumped on every change, so readers (the broker's settings cache) can tell cheaply. */
  version = 0;

  entry(name: string): CatalogueEntry | undefined {
    return this.#entries.get(name);
  }

  /** Every entry, by name. */
  entries(): [string, CatalogueEntry][] {
    return [...this.#entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * Why `record` cannot apply, or undefined when it can. Only what the catalogue itself knows:
   * the broker also checks the record against the configuration before proposing it.
   */
  problemWith(record: TopicRecord): string | undefined {
    if (!isTopicRecord(record)) return "not a topic record";
    const nameProblem = topicNameProblem(record.name);
    if (nameProblem) return nameProblem;
    // The broker's own logs (`__meta`, `__cluster`...) are not the catalogue's to change.
    if (record.name.startsWith("__")) {
      return `topics starting with '__' hold the broker's own state`;
    }
    const entry = this.#entries.get(record.name);
    switch (record.kind) {
      case "topic-create":
        if (
          !Number.isInteger(record.partitions) || record.partitions < 1 ||
          record.partitions > PARTITIONS_PER_TOPIC_MAX
        ) {
          return `partitions must be 1 to ${PARTITIONS_PER_TOPIC_MAX}, not ${record.partitions}`;
        }
        if (entry?.partitions !== undefined && record.partitions < entry.partitions) {
          return shrinkRefusal(record.name, entry.partitions, record.partitions);
        }
        if (!entry && this.#entries.size >= CATALOGUE_ENTRIES_MAX) {
          return `the catalogue holds ${CATALOGUE_ENTRIES_MAX} topics already`;
        }
        return undefined;
      case "topic-delete":
        if (entry?.deleted) return `topic ${record.name} is deleted already`;
        if (!entry && this.#entries.size >= CATALOGUE_ENTRIES_MAX) {
          return `the catalogue holds ${CATALOGUE_ENTRIES_MAX} topics already`;
        }
        return undefined;
    }
  }

  /** Applies `record` when it can apply; returns whether it changed anything. */
  apply(record: TopicRecord): boolean {
    if (this.problemWith(record) !== undefined) return false;
    const before = this.#entries.get(record.name);
    const after: CatalogueEntry = record.kind === "topic-create"
      ? { partitions: record.partitions }
      : { deleted: true };
    if (before?.partitions === after.partitions && before?.deleted === after.deleted) return false;
    this.#entries.set(record.name, after);
    this.version++;
    return true;
  }

  toJson(): CatalogueJson {
    return Object.fromEntries(this.entries());
  }

  /** Replaces the catalogue with `json`'s entries (those that are well formed). */
  restore(json: unknown): void {
    this.#entries = new Map();
    if (typeof json === "object" && json !== null) {
      for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
        const value = entry as Partial<CatalogueEntry> | null;
        if (value?.deleted === true) this.#entries.set(name, { deleted: true });
        else if (Number.isInteger(value?.partitions) && (value!.partitions as number) >= 1) {
          this.#entries.set(name, { partitions: value!.partitions as number });
        }
      }
    }
    this.version++;
  }
}

/** Whether `value` has the shape of a topic record. */
export function isTopicRecord(value: unknown): value is TopicRecord {
  const record = value as Partial<Record<string, unknown>> | null;
  if (typeof record !== "object" || record === null || typeof record.name !== "string") {
    return false;
  }
  if (record.kind === "topic-create") return typeof record.partitions === "number";
  return record.kind === "topic-delete";
}

/** Why a topic's partition count cannot go from `from` down to `to`. */
export function shrinkRefusal(name: string, from: number, to: number): string {
  return `Cannot shrink topic ${name} from ${from} to ${to} partitions: partitions are ` +
    "addressed by number and consumer groups keep offsets per partition, so the messages and " +
    "offsets of the partitions removed would be lost (create a new topic instead)";
}
