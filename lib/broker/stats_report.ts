/**
 * @module Renders `stats [item]` replies exactly as MetaQ's StatsManager: `STATS\r\n`, one
 * `key value...` line per fact, `END\r\n`. The `config` item is raw and handled by the broker.
 */
import { crc32 } from "../crc32.ts";
import type { Broker } from "./broker.ts";
import { METAQ_VERSION } from "./broker.ts";
import type { RealtimeKey } from "./stats.ts";
import { isInternalTopic, type LogEntry } from "../store/log.ts";

const HELP: readonly [string, string][] = [
  ["*EMPTY*", "Returns broker info."],
  ["help", "Returns help menu."],
  ["topics", "Returns topics statistics detail info."],
  ["offsets", "Returns partitions detail info."],
  ["realtime", "Returns realtime statistics detail info."],
  ["config", "Returns broker's config file content."],
];

const REALTIME: readonly RealtimeKey[] = [
  "cmd_put",
  "cmd_get",
  "cmd_offset",
  "get_miss",
  "put_failed",
  "message_size",
];
const REALTIME_NAMES = ["put", "get", "offset", "get_miss", "put_failed", "message_size"];

/** Extra items other parts contribute (`cluster`...): each renders its lines. */
export type StatsItems = ReadonlyMap<string, () => string[]>;

export function renderStats(broker: Broker, item: string | undefined, items: StatsItems): string {
  const lines: string[] = [];
  const add = (...values: (string | number | boolean | bigint)[]) => lines.push(values.join(" "));
  if (item === undefined || item.trim() === "") {
    general(broker, add);
  } else if (item === "topics") {
    topics(broker, add);
  } else if (item === "offsets") {
    for (const { topic, partition, log } of userLogs(broker)) {
      add(topic, "part", partition, "min_offset", log.startOffset, "max_offset", log.endOffset);
    }
  } else if (item === "realtime") {
    REALTIME.forEach((key, index) =>
      add(`realtime_${REALTIME_NAMES[index]}`, broker.stats.realtime(key))
    );
  } else if (item === "help") {
    for (const [name, description] of HELP) add(name, description);
  } else if (item === "security") {
    const counters = broker.stats.counters;
    add("auth_failures", counters.authFailures);
    add("auth_denied", counters.authDenied);
    add("connections_refused", counters.connectionsRefused);
    add("connections_timed_out", counters.connectionsTimedOut);
  } else if (item === "reset") {
    broker.stats.reset();
    add("reset", "ok");
  } else if (items.has(item)) {
    lines.push(...items.get(item)!());
  } else {
    topic(broker, item, add);
  }
  return `STATS\r\n${lines.map((line) => `${line}\r\n`).join("")}END\r\n`;
}

type Add = (...values: (string | number | boolean | bigint)[]) => void;

function general(broker: Broker, add: Add): void {
  const counters = broker.stats.counters;
  const topics = topicsOf(broker);
  let totalMessages = 0;
  for (const partitions of topics.values()) {
    for (const { log } of partitions) totalMessages += log.facts().messages;
  }
  add("pid", broker.processInfo.pid);
  add("broker_id", broker.config.system.brokerId);
  add("port", broker.port);
  add("uptime", broker.stats.uptimeSeconds());
  add("version", METAQ_VERSION);
  add("slave", false);
  add("curr_connections", broker.connectionCount);
  add("threads", 1);
  add("cmd_put", counters.cmdPut);
  add("cmd_get", counters.cmdGet);
  add("cmd_offset", counters.cmdOffset);
  add("tx_begin", counters.txBegin);
  add("tx_xa_begin", counters.txXaBegin);
  add("tx_commit", counters.txCommit);
  add("tx_rollback", counters.txRollback);
  add("get_miss", counters.getMiss);
  add("put_failed", counters.putFailed);
  add("total_messages", totalMessages);
  add("topics", topics.size);
  add("config_checksum", configChecksum(broker));
}

function topics(broker: Broker, add: Add): void {
  const stored = topicsOf(broker);
  for (const [name, partitions] of stored) {
    if (broker.catalogueEntry(name)?.deleted) continue; // its copies are on their way out
    const settings = broker.topicSettings(name);
    let count = 0;
    let bytes = 0;
    for (const { log } of partitions) {
      const facts = log.facts();
      count += facts.messages;
      bytes += facts.bytes;
    }
    add(
      name,
      "partitions",
      settings?.numPartitions ?? partitions.length,
      "message_count",
      count,
      "message_bytes",
      bytes,
      "accept_publish",
      settings?.acceptPublish ?? broker.config.system.acceptPublish,
      "accept_subscribe",
      settings?.acceptSubscribe ?? broker.config.system.acceptSubscribe,
    );
  }
  for (const name of broker.namedTopics()) {
    if (!stored.has(name)) add(name, "*Empty*");
  }
}

function topic(broker: Broker, name: string, add: Add): void {
  const partitions = topicsOf(broker).get(name);
  const configured = broker.isNamedTopic(name);
  const resultCode = partitions ? 0 : configured ? 2 : 1;
  let count = 0;
  let bytes = 0;
  for (const { log } of partitions ?? []) {
    const facts = log.facts();
    count += facts.messages;
    bytes += facts.bytes;
  }
  add(name);
  add("resultCode", resultCode);
  // The topic's partitions, not only those holding messages (MetaQ: getNumPartitions).
  const settings = partitions || configured ? broker.topicSettings(name) : undefined;
  add("partitions", settings?.numPartitions ?? partitions?.length ?? 0);
  add("message_count", count);
  add("bytes", bytes);
  REALTIME.forEach((key, index) =>
    add(`topic_realtime_${REALTIME_NAMES[index]}`, broker.stats.realtime(key, name))
  );
}

/** MetaQ reports the CRC-32 of the config file; 0 when running without one. */
function configChecksum(broker: Broker): number {
  const text = broker.config.fileText;
  return text === undefined ? 0 : crc32(new TextEncoder().encode(text));
}

/** The logs of user topics (the broker's own `__` topics are not shown to clients). */
function userLogs(broker: Broker): LogEntry[] {
  return broker.logs.list().filter((entry) => !isInternalTopic(entry.topic));
}

/** User topics with at least one partition here, each with its partitions in order. */
function topicsOf(broker: Broker): Map<string, LogEntry[]> {
  const topics = new Map<string, LogEntry[]>();
  for (const entry of userLogs(broker)) {
    const list = topics.get(entry.topic) ?? [];
    list.push(entry);
    topics.set(entry.topic, list);
  }
  return topics;
}
