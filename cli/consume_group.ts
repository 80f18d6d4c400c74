/**
 * @module `metaq consume TOPIC --group G` (and `--broadcast`): consumes as a member of a consumer
 * group, so several such processes split the topic's partitions, or as a broadcast consumer that
 * reads everything. Runs until SIGINT/SIGTERM or `--max`, then commits and leaves. Partition
 * starts and stops are reported on stderr, one line each. consume.ts hands over to it.
 *
 * A group is balanced by the broker's coordinator (Consumer), or, with `--zk-connect`, by its
 * members through ZooKeeper as MetaQ's Java consumers balance (ZkConsumer), so this process and
 * original consumers can share the group. Printing, `--max` and acknowledgement work alike.
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import type { ClientAuth, ClientTls } from "../lib/client/connection.ts";
import { type ConsumedMessage, Consumer, type ConsumerEvent } from "../lib/client/consumer.ts";
import type { MessageHandler } from "../lib/client/partition_reader.ts";
import { ZkConsumer, type ZkConsumerEvent } from "../lib/client/zk_consumer.ts";
import { describeError } from "../lib/errors.ts";
import { consoleLogger } from "../lib/log.ts";
import type { Strategy } from "../lib/protocol/group_wire.ts";
import { groupNameProblem } from "../lib/protocol/names.ts";
import type { ZkClient } from "../lib/zk/client.ts";
import { childrenOf } from "../lib/zk/nodes.ts";
import { CliError, integerFlag } from "./common.ts";
import { openZooKeeper, type ZkTarget } from "./zk_connect.ts";

export interface GroupConsumeFlags {
  readonly brokers: string[];
  readonly security: { auth?: ClientAuth; tls?: ClientTls };
  readonly topic: string;
  readonly group?: string;
  readonly broadcast: boolean;
  readonly strategy?: string;
  readonly instance?: string;
  readonly offsets?: string;
  readonly commitPeriod?: string;
  readonly consumerId?: string;
  readonly start: "earliest" | "latest";
  readonly max?: number;
  readonly maxSize: number;
  readonly format: (message: ConsumedMessage) => Uint8Array;
}

export interface ZkGroupConsumeFlags extends Omit<GroupConsumeFlags, "brokers" | "broadcast"> {
  readonly zk: ZkTarget;
  /** zk.zkSyncTimeMs: the pause between rebalance attempts. */
  readonly syncTime?: string;
  /** Wait for a topic no broker offers yet, instead of failing. */
  readonly follow: boolean;
}

/** What both kinds of member offer the loop below. */
interface Member {
  subscribe(topic: string, handler: MessageHandler, options: { autoAck: boolean }): unknown;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Consumes until a signal or `max`; resolves with the number of messages printed. */
export async function consumeAsGroup(flags: GroupConsumeFlags): Promise<number> {
  const options = checkFlags(flags);
  const client = new MetaqClient({
    brokers: flags.brokers,
    reconnectAttemptsMax: 1000,
    ...flags.security,
  });
  try {
    return await consumeWith(flags, (beforeCommit) =>
      new Consumer(client, {
        ...options,
        maxSize: flags.maxSize,
        logger: consoleLogger("warn"),
        onEvent: report,
        beforeCommit,
      }));
  } finally {
    client.close();
  }
}

/**
 * Consumes as a member of a ZooKeeper-balanced group (MetaQ's ids, owners and offsets nodes);
 * resolves with the number of messages printed.
 */
export async function consumeAsZkGroup(flags: ZkGroupConsumeFlags): Promise<number> {
  const { group, strategy, commitOffsetPeriodMs } = checkGroupFlags(flags);
  const syncTimeMs = integerFlag("zk-sync-time-ms", flags.syncTime, { min: 10, max: 600_000 }) ??
    5000;
  const zk = await openZooKeeper(flags.zk);
  try {
    if (!flags.follow) await checkOffered(zk, flags.zk, flags.topic);
    return await consumeWith(flags, (beforeCommit) =>
      new ZkConsumer({
        zk,
        root: flags.zk.layout.root,
        group,
        consumerId: flags.consumerId,
        strategy,
        start: flags.start,
        maxSize: flags.maxSize,
        commitOffsetPeriodMs,
        syncTimeMs,
        clientOptions: { ...flags.security, reconnectAttemptsMax: 1000 },
        logger: consoleLogger("warn"),
        onEvent: reportZk,
        beforeCommit,
      }));
  } finally {
    await zk.close();
  }
}

/** A topic no broker offers to consumers is a typo until proven otherwise (`--follow` waits). */
async function checkOffered(zk: ZkClient, target: ZkTarget, topic: string): Promise<void> {
  const dir = `${target.layout.brokerTopicsSub}/${topic}`;
  if ((await childrenOf(zk, dir)).length > 0) return;
  throw new CliError(
    `Cannot consume ${topic}: no broker offers it in ZooKeeper (${dir} is empty or missing); ` +
      "give --follow to wait for one",
    1,
  );
}

/**
 * Runs one member until a signal or `max`. Messages are acked manually, so messages after --max
 * are rolled back for the next member, not skipped. Partitions are read in parallel: a slot is
 * taken before the write, so --max is exact. A message is acked (so committed) only once its
 * line reached stdout: a SIGKILL then loses nothing it claimed to have printed.
 */
async function consumeWith(
  flags: { topic: string; max?: number; format: (message: ConsumedMessage) => Uint8Array },
  build: (beforeCommit: () => Promise<void>) => Member,
): Promise<number> {
  let printed = 0;
  let stopping: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (stopping = resolve));
  const output = new BatchedStdout();
  const consumer = build(() => output.flushed());
  let taken = 0;
  const done = (message: ConsumedMessage) => {
    message.ack();
    printed += 1;
    if (printed === flags.max) stopping!();
  };
  consumer.subscribe(flags.topic, (message) => {
    if (flags.max !== undefined && taken >= flags.max) return message.rollback();
    taken += 1;
    return output.write(flags.format(message), () => done(message));
  }, { autoAck: false });
  const onSignal = () => stopping!();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await consumer.start();
    await stopped;
    return printed;
  } catch (error) {
    throw new CliError(`Cannot consume ${flags.topic}: ${describeError(error)}`, 1);
  } finally {
    await consumer.close().catch((error) =>
      process.stderr.write(`metaq consume: Cannot close cleanly: ${describeError(error)}\n`)
    );
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** The flags both kinds of group share: name, strategy, commit period. */
function checkGroupFlags(flags: { group?: string; strategy?: string; commitPeriod?: string }) {
  if (flags.group === undefined) {
    throw new CliError("Cannot use --broadcast without --group (it names the consumers)");
  }
  const problem = groupNameProblem(flags.group);
  if (problem) throw new CliError(`Cannot accept name: ${problem}`);
  const strategy = (flags.strategy ?? "DEFAULT").toUpperCase();
  if (strategy !== "DEFAULT" && strategy !== "CONSIST") {
    throw new CliError(`Cannot use --strategy ${flags.strategy}: expected DEFAULT or CONSIST`);
  }
  const commitOffsetPeriodMs =
    integerFlag("commit-period", flags.commitPeriod, { min: 10, max: 3_600_000 }) ?? 5000;
  return { group: flags.group, strategy: strategy as Strategy, commitOffsetPeriodMs };
}

function checkFlags(flags: GroupConsumeFlags) {
  const { group, strategy, commitOffsetPeriodMs } = checkGroupFlags(flags);
  const offsets = flags.offsets ?? (flags.broadcast ? "file" : "broker");
  if (!["broker", "file", "memory"].includes(offsets)) {
    throw new CliError(`Cannot use --offsets ${offsets}: expected broker, file or memory`);
  }
  if (flags.broadcast && offsets === "broker") {
    throw new CliError("Cannot use --offsets broker with --broadcast: broadcast offsets are local");
  }
  return {
    group,
    mode: flags.broadcast ? "broadcast" as const : "group" as const,
    strategy,
    offsets: offsets as "broker" | "file" | "memory",
    instance: flags.instance,
    consumerId: flags.consumerId,
    commitOffsetPeriodMs,
    start: flags.start,
  };
}

/** One stderr line per partition start and stop, with the time, so runs can be audited. */
function report(event: ConsumerEvent): void {
  const at = new Date().toISOString();
  if (event.kind === "fenced") {
    process.stderr.write(`${at} fenced: ${event.reason}\n`);
  } else if (event.kind === "started") {
    process.stderr.write(`${at} started ${event.topic}-${event.partition} at ${event.offset}\n`);
  } else {
    process.stderr.write(
      `${at} stopped ${event.topic}-${event.partition} at ${event.offset ?? "unknown"}\n`,
    );
  }
}

/** The same for a ZooKeeper group, whose partitions are `<brokerId>-<partition>`. */
function reportZk(event: ZkConsumerEvent): void {
  const at = new Date().toISOString();
  if (event.kind === "started") {
    process.stderr.write(
      `${at} started ${event.topic} ${event.partition} at ${event.offset} from ${event.broker}\n`,
    );
  } else {
    process.stderr.write(
      `${at} stopped ${event.topic} ${event.partition} at ${event.offset ?? "unknown"}\n`,
    );
  }
}

/**
 * Lines written in one turn leave as one stdout write (a write per message costs more than the
 * rest of consuming it); each line's callback runs once its write is done. `write` returns a
 * promise only while the pipe is full: then the caller waits, which is how backpressure reaches
 * the consumer.
 */
class BatchedStdout {
  #parts: Uint8Array[] = [];
  #callbacks: (() => void)[] = [];
  #scheduled = false;
  #draining: Promise<void> | undefined;
  #lastWrite: Promise<void> = Promise.resolve();

  write(bytes: Uint8Array, written: () => void): Promise<void> | undefined {
    this.#parts.push(bytes);
    this.#callbacks.push(written);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#flush());
    }
    return this.#draining;
  }

  /** Resolves once every line written so far is written and its callback has run. */
  flushed(): Promise<void> {
    this.#flush();
    return this.#lastWrite;
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#parts.length === 0) return;
    const bytes = Buffer.concat(this.#parts);
    const callbacks = this.#callbacks;
    this.#parts = [];
    this.#callbacks = [];
    this.#lastWrite = new Promise((resolve) => {
      const ok = process.stdout.write(bytes, () => {
        for (const callback of callbacks) callback();
        resolve();
      });
      if (ok || this.#draining) return;
      this.#draining = new Promise((drained) =>
        process.stdout.once("drain", () => {
          this.#draining = undefined;
          drained();
        })
      );
    });
  }
}
