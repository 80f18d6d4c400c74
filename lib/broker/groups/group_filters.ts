/**
 * @module MetaQ's server-side group filters (`group.<name>=` entries of a `[topic=...]`
 * section): which records a group's `get` serves. Built once from the configuration, before
 * the broker, which asks it for each filtered read. A filter that does not parse is refused at
 * start-up (`problems`); a Java class name is logged and ignored (the group sees everything).
 */
import type { Config } from "../../config/config.ts";
import type { Logger } from "../../log.ts";
import { parseFilter } from "../../protocol/filter.ts";
import type { RecordFilter } from "../broker.ts";
import { recordFilter } from "./filter.ts";

export class GroupFilters {
  readonly #config: Config;
  readonly #cache = new Map<string, RecordFilter | undefined>();
  readonly #settings: (topic: string) => ReadonlyMap<string, string> | undefined;

  constructor(
    config: Config,
    settings: (topic: string) => ReadonlyMap<string, string> | undefined,
  ) {
    this.#config = config;
    this.#settings = settings;
  }

  /** Filter entries that are neither a valid metaq filter nor a Java class name. */
  problems(): string[] {
    const problems: string[] = [];
    for (const section of this.#config.topics) {
      for (const [group, source] of section.groupFilters) {
        const parsed = parseFilter(source);
        if (parsed.kind === "invalid") {
          problems.push(
            `Cannot use filter group.${group} in [topic=${section.pattern}]: ${parsed.reason}`,
          );
        }
      }
    }
    return problems;
  }

  /** Says once, at start-up, which filters name Java classes (they cannot run here). */
  warnAboutJavaClasses(logger: Logger): void {
    for (const section of this.#config.topics) {
      for (const [group, source] of section.groupFilters) {
        const parsed = parseFilter(source);
        if (parsed.kind !== "javaClass") continue;
        logger.log("warn", "Ignoring server-side filter: metaq cannot run Java classes", {
          topic: section.pattern,
          group,
          class: parsed.className,
          hint: "use the metaq filter syntax in docs/groups.md",
        });
      }
    }
  }

  /** The filter of `group` on `topic`, if its section has one that can run here. */
  filterFor(topic: string, group: string): RecordFilter | undefined {
    const source = this.#settings(topic)?.get(group);
    if (source === undefined) return undefined;
    if (!this.#cache.has(source)) {
      const parsed = parseFilter(source);
      this.#cache.set(source, parsed.kind === "filter" ? recordFilter(parsed.filter) : undefined);
    }
    return this.#cache.get(source);
  }
}
