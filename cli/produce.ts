/**
 * @module `metaq produce`: one message per input line, pipelined in a window of unacknowledged
 * puts, every ack awaited. Each line's fate is known by its line number:
 *
 * | a put ...                                                    | becomes                       |
 * | ------------------------------------------------------------ | ----------------------------- |
 * | acknowledged                                                 | acknowledged                  |
 * | refused for good (too large, topic refused, wrong partition) | failed, with its line and why |
 * | never written (no connection, broker draining: 503)          | sent again once it can be     |
 * | in flight when the connection broke, or never answered       | INDETERMINATE: may be stored  |
 *
 * A lost connection pauses the input and is dialed again with back-off for `--retry-ms`; after
 * that the run gives up at once instead of failing every remaining line. At the end (input done,
 * gave up, or Ctrl-C) the summary gives the counts, the failed and indeterminate lines, and the
 * line to resume from.
 *
 * Where a line goes is a route: one broker (or cluster) and its partitions, or, with
 * `--zk-connect`, every broker that publishes the topic in a MetaQ fleet's ZooKeeper.
 */
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import process from "node:process";
import { type Message, MetaqClient } from "../lib/client/client.ts";
import { ConnectionError, TimeoutError } from "../lib/client/errors.ts";
import { failureOutcome, keyHashSelector } from "../lib/client/producer.ts";
import { ZkProducer } from "../lib/client/zk_producer.ts";
import { PutBatcher } from "../lib/client/put_batcher.ts";
import { type DeliveryTime, parseDurationMs, parseInstantMs } from "../lib/protocol/delayed.ts";
import { describeError } from "../lib/errors.ts";
import { PENDING_REQUESTS_PER_CONNECTION_MAX } from "../lib/limits.ts";
import { encodeMessageMeta, parseHeader } from "../lib/protocol/message_meta.ts";
import type { ZkClient } from "../lib/zk/client.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatBytes,
  formatFlag,
  formatRate,
  integerFlag,
  parseFlags,
  Progress,
  SECURITY_FLAGS,
  topicArgument,
  topicMetadata,
} from "./common.ts";
import { unescape } from "./message_format.ts";
import { openZooKeeper, ZK_FLAGS, ZK_USAGE, type ZkTarget, zkTarget } from "./zk_connect.ts";

const USAGE = `Usage: metaq produce TOPIC [options]

Sends one message per line of stdin (or --file), or a single --message, keeping up to --window
puts in flight, and waits for every acknowledgement. If the connection is lost it stops reading,
dials again with back-off for up to --retry-ms, resends what was never written and goes on; puts
in flight when it broke are INDETERMINATE (each may or may not be stored) and are not resent.
The summary on stderr (or stdout with --format json) counts acknowledged, failed, indeterminate
and unsent lines, names them by line number and says where to resume. Ctrl-C stops reading,
waits for the puts in flight (Ctrl-C again stops waiting) and prints the summary.
Exit code: 0 when every line was acknowledged, 1 otherwise, 130 after Ctrl-C.

Options:
  --partition N             send every message to partition N
  --key KEY                 route by key hash (same key, same partition, order kept) and store
                            the key with every message (in the attribute: see docs/cli.md)
  -H, --header NAME=VALUE   add a header to every message (repeatable; stored in the attribute)
  --attribute TEXT          attach a MetaQ message attribute to every message
  --delay DURATION          deliver each message this long after the broker accepts it
                            (500ms, 30s, 15m, 2h, 40d; see docs/delayed.md)
  --at TIME                 deliver every message at TIME (ISO 8601 with a zone,
                            such as 2026-12-24T09:00:00Z)
  --file FILE               read lines from FILE instead of stdin
  --message TEXT            send one message TEXT and exit
  --delimiter TEXT          messages are separated by TEXT instead of newlines (\\n, \\t, \\0,
                            \\\\ escapes; a CR before a newline is dropped only by default)
  --whole-file              send the whole input (--file or stdin) as one message
  --window N                unacknowledged messages in flight (default 4096, at most 4096)
  --timeout MS              time allowed for each acknowledgement (default 10000)
  --retry-ms MS             keep reconnecting and resending this long (default 30000; 0: never)
  --format text|json        summary as text on stderr (default) or as one JSON object on stdout

ZooKeeper mode (see docs/zookeeper.md): messages go round-robin over the partitions of every
broker that publishes TOPIC, as MetaQ's Java producer sends them (--partition B-P names one,
--key hashes over them all); a broker that cannot be reached is skipped.
${ZK_USAGE}

${CONNECTION_USAGE}

Examples:
  echo hello | metaq produce orders
  seq 1000000 | metaq produce numbers --partition 0
  metaq produce orders --message '{"id":1}' --key customer-7 -H trace=42 -H source=web
  metaq produce images --file photo.jpg --whole-file
  find . -print0 | metaq produce files --delimiter '\\0'
  tail -n +44162 orders.txt | metaq produce orders    # resume where a summary said
  seq 100 | metaq produce orders --zk-connect zk1:2181,zk2:2181
  metaq produce reminders --message 'call back' --delay 15m`;

const FLAGS = {
  broker: { type: "string" },
  partition: { type: "string" },
  key: { type: "string" },
  header: { type: "string", short: "H", multiple: true },
  attribute: { type: "string" },
  delay: { type: "string" },
  at: { type: "string" },
  file: { type: "string" },
  message: { type: "string" },
  delimiter: { type: "string" },
  "whole-file": { type: "boolean" },
  window: { type: "string" },
  timeout: { type: "string" },
  "retry-ms": { type: "string" },
  format: { type: "string" },
  ...ZK_FLAGS,
  ...SECURITY_FLAGS,
} as const;

/** Failed lines listed one by one in the summary; the rest are counted. */
const FAILURES_SHOWN_MAX = 5;
/** Runs of indeterminate lines listed in the text summary. */
const RANGES_SHOWN_MAX = 5;
/** Waits between reconnection attempts; the last repeats until --retry-ms runs out. */
const RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000, 4000];

export const produce: CommandSpec = {
  name: "produce",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("produce", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const topic = topicArgument("produce", positionals[0]);
    if (values.partition !== undefined && values.key !== undefined) {
      throw new CliError("Cannot combine --partition and --key");
    }
    if (values.file !== undefined && values.message !== undefined) {
      throw new CliError("Cannot combine --file and --message");
    }
    const format = formatFlag(values.format);
    const when = deliveryTimeFlags(values.delay, values.at);
    const zk = zkTarget(values);
    if (zk && when) {
      throw new CliError(
        "Cannot combine --delay or --at with --zk-connect: MetaQ brokers deliver at once",
      );
    }
    if (zk && values.broker !== undefined) {
      throw new CliError("Cannot combine --broker with --zk-connect: ZooKeeper names the brokers");
    }
    const partition = zk ? undefined : integerFlag("partition", values.partition, {
      min: 0,
      max: 1_000_000,
    });
    if (zk && values.partition !== undefined && !/^\d+-\d+$/.test(values.partition)) {
      throw new CliError(
        `Cannot use --partition ${values.partition} with --zk-connect: name a partition as ` +
          "<brokerId>-<partition>, such as 1-0",
      );
    }
    // The broker answers at most PENDING_REQUESTS_PER_CONNECTION_MAX requests in flight on one
    // connection; a full window keeps its group commit's batches large (one fsync for many).
    const windowMax = integerFlag("window", values.window, {
      min: 1,
      max: PENDING_REQUESTS_PER_CONNECTION_MAX,
    }) ?? PENDING_REQUESTS_PER_CONNECTION_MAX;
    if (values["whole-file"] && values.message !== undefined) {
      throw new CliError("Cannot combine --whole-file and --message");
    }
    if (values["whole-file"] && values.delimiter !== undefined) {
      throw new CliError("Cannot combine --whole-file and --delimiter: the input is one message");
    }
    if (values.delimiter === "") throw new CliError("Cannot use an empty --delimiter");
    const headers = (values.header ?? []).map((text) => {
      const header = parseHeader(text);
      if (!header) {
        throw new CliError(`Cannot use -H ${text}: expected NAME=VALUE`);
      }
      return header;
    });
    const attribute = encodeMessageMeta({ attribute: values.attribute, key: values.key, headers });
    const timeout = integerFlag("timeout", values.timeout, { min: 1, max: 3_600_000 }) ?? 10_000;
    const retryMs = integerFlag("retry-ms", values["retry-ms"], { min: 0, max: 86_400_000 }) ??
      30_000;
    if (values.file !== undefined && !fs.existsSync(values.file)) {
      throw new CliError(`Cannot read --file ${values.file}: no such file`);
    }
    let route: Route | undefined;
    try {
      route = zk
        ? await zkRoute(zk, {
          topic,
          name: values.partition,
          key: values.key,
          timeout,
          security: clientSecurity(values),
        })
        : await brokerRoute({
          brokers: brokerList(values.broker),
          topic,
          partition,
          key: values.key,
          when,
          timeout,
          security: clientSecurity(values),
        });
      const run = new ProduceRun({
        route,
        topic,
        attribute,
        windowMax,
        retryMs,
      });
      const onSignal = () => run.interrupt();
      process.on("SIGINT", onSignal);
      try {
        await run.send(messageBatches(values));
      } finally {
        process.off("SIGINT", onSignal);
      }
      const summary = run.summary();
      report(summary, { format, topic, file: values.file });
      if (summary.stopped === "interrupted") return 130;
      return summary.acknowledged === summary.lines ? 0 : 1;
    } catch (error) {
      if (error instanceof CliError) throw error;
      throw new CliError(`Cannot produce to ${topic}: ${describeError(error)}`, 1);
    } finally {
      await route?.close();
    }
  },
};

/** `--delay` or `--at` as a delivery time; undefined when neither is given. */
function deliveryTimeFlags(delay?: string, at?: string): DeliveryTime | undefined {
  if (delay !== undefined && at !== undefined) {
    throw new CliError("Cannot combine --delay and --at");
  }
  if (delay !== undefined) {
    const delayMs = parseDurationMs(delay);
    if (delayMs === undefined) {
      throw new CliError(
        `Cannot use --delay ${delay}: expected a duration such as 500ms, 30s, 15m, 2h, 40d`,
      );
    }
    return { delayMs };
  }
  if (at === undefined) return undefined;
  const deliverAtMs = parseInstantMs(at);
  if (deliverAtMs === undefined) {
    throw new CliError(
      `Cannot use --at ${at}: expected an ISO 8601 time with a zone, such as 2026-12-24T09:00:00Z`,
    );
  }
  return { deliverAtMs };
}

/** Where lines go: picks each one's partition, sends it, and dials again after a loss. */
interface Route {
  /** Sends one message; `done` gets no error once it is acknowledged. */
  put(message: Message, done: (error?: Error) => void): void;
  /** Dials again after a lost connection; throws while no broker can be reached. */
  reconnect(): Promise<void>;
  close(): Promise<void>;
}

interface RouteOptions {
  readonly topic: string;
  readonly key?: string;
  readonly timeout: number;
  readonly security: ReturnType<typeof clientSecurity>;
}

/** One broker (or cluster): round robin over its partitions, or --partition, or --key. */
async function brokerRoute(
  options: RouteOptions & { brokers: string[]; partition?: number; when?: DeliveryTime },
): Promise<Route> {
  const { topic, partition, key, brokers, when } = options;
  const client = new MetaqClient({
    brokers,
    requestTimeoutMs: options.timeout,
    // One dial of each broker per try: the run dials again, with its back-off and notes.
    reconnectAttemptsMax: brokers.length,
    ...options.security,
  });
  try {
    const meta = await topicMetadata(client, topic, "produce to");
    if (partition !== undefined && partition >= meta.partitions) {
      throw new CliError(
        `Cannot produce to ${topic}: partition ${partition} does not exist (${topic} has ` +
          `partitions 0 to ${meta.partitions - 1})`,
        1,
      );
    }
    const selector = keyHashSelector();
    // Lines read in one chunk leave as one batched put per partition (one ack for many).
    const batcher = new PutBatcher(client);
    let next = 0;
    return {
      put: (message, done) => {
        const target = partition ??
          (key !== undefined
            ? selector({ topic, partitions: meta.partitions, key })
            : next++ % meta.partitions);
        if (when) client.putDelayed(topic, target, message, when).then(() => done(), done);
        else batcher.add(topic, target, message, done); // no promise per message
      },
      reconnect: async () => void await client.connection(),
      close: () => Promise.resolve(client.close()),
    };
  } catch (error) {
    client.close();
    throw error;
  }
}

/** Every master that publishes the topic in ZooKeeper, as MetaQ's Java producer sends. */
async function zkRoute(
  target: ZkTarget,
  options: RouteOptions & { name?: string },
): Promise<Route> {
  const { topic, name, key } = options;
  const zk: ZkClient = await openZooKeeper(target);
  const producer = new ZkProducer({
    zk,
    root: target.layout.root,
    clientOptions: {
      requestTimeoutMs: options.timeout,
      // One dial per put: an unreachable broker is skipped, not waited for.
      reconnectAttemptsMax: 1,
      ...options.security,
    },
  });
  const close = async () => {
    producer.close();
    await zk.close();
  };
  try {
    const partitions = await producer.partitionsOf(topic);
    const dir = `${target.layout.brokerTopicsPub}/${topic}`;
    if (partitions.length === 0) {
      throw new CliError(
        `Cannot produce to ${topic}: no broker publishes it in ZooKeeper (no master under ${dir})`,
        1,
      );
    }
    if (name !== undefined && !partitions.some((partition) => partition.name === name)) {
      throw new CliError(
        `Cannot produce to ${topic}: partition ${name} is not published (${
          partitions.map((partition) => partition.name).join(", ")
        } are)`,
        1,
      );
    }
    return {
      put: (message, done) => producer.put(topic, message, { name, key }).then(() => done(), done),
      reconnect: () => producer.reach(topic),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

interface RunOptions {
  readonly route: Route;
  readonly topic: string;
  readonly attribute?: string;
  readonly windowMax: number;
  readonly retryMs: number;
}

/** One input line on its way. */
interface Line {
  readonly number: number;
  readonly payload: Uint8Array;
}

/** Why the run stopped reading: the input ended, Ctrl-C, or the broker stayed unreachable. */
type Stopped = "input" | "interrupted" | "gaveUp";

export interface ProduceSummary {
  readonly topic: string;
  /** Lines read (each is one message). */
  readonly lines: number;
  readonly acknowledged: number;
  readonly failed: number;
  readonly indeterminate: number;
  /** Lines read but never written (the run stopped before it could send them). */
  readonly unsent: number;
  /** Payload bytes acknowledged. */
  readonly bytes: number;
  readonly seconds: number;
  readonly stopped: Stopped;
  /** Why the run gave up, when it did. */
  readonly reason?: string;
  /** The first failed lines, with the broker's reason. */
  readonly failures: readonly { readonly line: number; readonly error: string }[];
  readonly failuresNotShown: number;
  /** Indeterminate lines as [first, last] runs. */
  readonly indeterminateLines: readonly (readonly [number, number])[];
  /**
   * The first line never written (unsent, or not read before the run stopped); null when every
   * line was sent. Lines before it are acknowledged, failed or indeterminate.
   */
  readonly resumeFromLine: number | null;
}

/** Sends lines through one client; counts each line's fate. See the module table. */
class ProduceRun {
  readonly #options: RunOptions;
  readonly #started = performance.now();
  readonly #progress = new Progress();
  #lines = 0;
  #acknowledged = 0;
  #bytes = 0;
  #failedCount = 0;
  readonly #failures: { line: number; error: string }[] = [];
  readonly #indeterminate: number[] = [];
  /** Lines known not written, to send again once the broker can take them. */
  #retry: Line[] = [];
  #inFlight = 0;
  /** Lines in flight, so that abandoning them (a second Ctrl-C) can name them. */
  readonly #pending = new Set<number>();
  /** Since when puts have been failing, and why; cleared by the next acknowledgement. */
  #trouble: { sinceMs: number; reason: string; attempts: number } | undefined;
  #lost = false;
  #stopped: Stopped | undefined;
  #reason: string | undefined;
  #inputDone = false;
  #interrupts = 0;
  #wake: (() => void) | undefined;
  /** Puts in flight at or below which a waiting reader is woken. */
  readonly #lowWater: number;
  readonly #stop = Promise.withResolvers<void>();

  constructor(options: RunOptions) {
    this.#options = options;
    this.#lowWater = Math.floor(options.windowMax * 3 / 4);
  }

  /** Ctrl-C: stop reading; a second one stops waiting for the puts in flight. */
  interrupt(): void {
    this.#interrupts += 1;
    this.#stopped ??= "interrupted";
    this.#stop.resolve();
    this.#wake?.();
    if (this.#interrupts === 1) {
      process.stderr.write(
        `metaq produce: stopping; waiting for ${this.#inFlight} puts in flight (Ctrl-C again ` +
          "to stop waiting)\n",
      );
    }
  }

  /** Sends every line of `input` (until stopped), then waits for the puts in flight. */
  async send(input: AsyncIterator<Uint8Array[]>): Promise<void> {
    const stopped = this.#stop.promise.then(() => undefined);
    while (this.#stopped === undefined) {
      const next = await Promise.race([input.next(), stopped]);
      if (next === undefined) break;
      if (next.done) {
        this.#inputDone = true;
        break;
      }
      for (const payload of next.value) {
        this.#lines += 1;
        const line = { number: this.#lines, payload };
        while (!this.#canSend() && this.#stopped === undefined) await this.#step();
        if (this.#stopped !== undefined) this.#retry.push(line); // read, never sent
        else this.#put(line);
      }
    }
    if (!this.#inputDone) void input.return?.();
    await this.#finish();
    this.#progress.done();
  }

  summary(): ProduceSummary {
    const seconds = (performance.now() - this.#started) / 1000;
    const indeterminate = [...this.#indeterminate, ...this.#pending].sort((a, b) => a - b);
    const unsent = this.#retry.map((line) => line.number);
    // The first line never written: lines before it are acknowledged, failed or indeterminate.
    const firsts = unsent.length > 0 ? [unsent.reduce((a, b) => Math.min(a, b))] : [];
    if (!this.#inputDone) firsts.push(this.#lines + 1);
    return {
      topic: this.#options.topic,
      lines: this.#lines,
      acknowledged: this.#acknowledged,
      failed: this.#failedCount,
      indeterminate: indeterminate.length,
      unsent: unsent.length,
      bytes: this.#bytes,
      seconds,
      stopped: this.#stopped ?? "input",
      reason: this.#reason,
      failures: this.#failures,
      failuresNotShown: this.#failedCount - this.#failures.length,
      indeterminateLines: ranges(indeterminate),
      resumeFromLine: firsts.length > 0 ? Math.min(...firsts) : null,
    };
  }

  #canSend(): boolean {
    return this.#stopped === undefined && !this.#lost && this.#retry.length === 0 &&
      this.#inFlight < this.#options.windowMax;
  }

  /** One move towards sending: reconnect after a failure, resend one queued line, or wait. */
  async #step(): Promise<void> {
    if (this.#lost || (this.#retry.length > 0 && this.#trouble)) return await this.#recover();
    if (this.#retry.length > 0 && this.#inFlight < this.#options.windowMax) {
      return this.#put(this.#retry.shift()!);
    }
    await this.#woken();
  }

  #woken(): Promise<void> {
    return new Promise<void>((resolve) => (this.#wake = resolve));
  }

  /** One back-off step: wait, dial, and on success let the queued lines go out again. */
  async #recover(): Promise<void> {
    const trouble = this.#trouble!;
    const delayMs = RETRY_DELAYS_MS[Math.min(trouble.attempts, RETRY_DELAYS_MS.length - 1)];
    const elapsedMs = performance.now() - trouble.sinceMs;
    if (elapsedMs + delayMs > this.#options.retryMs) {
      this.#stopped = "gaveUp";
      this.#reason = `${trouble.reason} (still failing after ${(elapsedMs / 1000).toFixed(1)} s)`;
      return;
    }
    trouble.attempts += 1;
    process.stderr.write(
      `metaq produce: ${trouble.reason}; retrying in ${delayMs} ms (attempt ${trouble.attempts})\n`,
    );
    await Promise.race([
      new Promise((resolve) => setTimeout(resolve, delayMs)),
      this.#stop.promise,
    ]);
    if (this.#stopped !== undefined) return;
    try {
      await this.#options.route.reconnect();
      this.#lost = false; // the queued lines go out in the next steps; failures come back here
    } catch (error) {
      trouble.reason = `Cannot reconnect: ${describeError(error)}`;
    }
  }

  #put(line: Line): void {
    this.#inFlight += 1;
    this.#pending.add(line.number);
    this.#options.route.put(
      { payload: line.payload, attribute: this.#options.attribute },
      (error) => this.#settled(line, error),
    );
  }

  #settled(line: Line, error: unknown): void {
    if (!this.#pending.delete(line.number)) return; // abandoned by a second Ctrl-C: counted
    this.#inFlight -= 1;
    if (error === undefined) {
      this.#acknowledged += 1;
      this.#bytes += line.payload.length;
      this.#trouble = undefined;
    } else {
      this.#failed(line, error);
    }
    this.#progress.update(() =>
      `produced ${this.#acknowledged.toLocaleString("en-US")} of ${
        this.#lines.toLocaleString("en-US")
      } (${formatRate(this.#acknowledged, (performance.now() - this.#started) / 1000)} msg/s)`
    );
    // Wake the reader once a quarter of the window is free (or on trouble), not on every ack:
    // it then writes a burst of puts, which leave in one socket write.
    if (error === undefined && this.#inFlight > this.#lowWater) return;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #failed(line: Line, error: unknown): void {
    const outcome = failureOutcome(error);
    if (error instanceof ConnectionError) this.#lost = true;
    if (outcome === "refused") {
      this.#failedCount += 1;
      if (this.#failures.length < FAILURES_SHOWN_MAX) {
        this.#failures.push({ line: line.number, error: describeError(error) });
      }
      return;
    }
    if (outcome === "unknown") {
      this.#indeterminate.push(line.number);
      if (!(error instanceof TimeoutError || error instanceof ConnectionError)) return;
    } else {
      this.#retry.push(line);
    }
    this.#trouble ??= { sinceMs: performance.now(), reason: describeError(error), attempts: 0 };
  }

  /** After the input: resend what is queued and wait for every put in flight. */
  async #finish(): Promise<void> {
    while (this.#interrupts < 2) {
      if (this.#retry.length > 0 && this.#stopped === undefined) await this.#step();
      else if (this.#inFlight > 0) await this.#woken();
      else return;
    }
  }
}

/**
 * Splits chunks into messages at a delimiter, dropped; an empty last piece is dropped (input
 * that ends with the delimiter). With the default newline a CR before it is dropped too (CRLF).
 */
class DelimitedSplitter {
  readonly #delimiter: Uint8Array;
  readonly #crlf: boolean;
  #carry: Uint8Array = new Uint8Array(0);

  constructor(delimiter: Uint8Array, crlf: boolean) {
    this.#delimiter = delimiter;
    this.#crlf = crlf;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const data = this.#carry.length > 0 ? concat(this.#carry, chunk) : chunk;
    const pieces: Uint8Array[] = [];
    const delimiter = this.#delimiter;
    const first = delimiter[0];
    const width = delimiter.length;
    let start = 0;
    for (let at = data.indexOf(first); at >= 0; at = data.indexOf(first, at + 1)) {
      if (width > 1 && !startsWith(data, at, delimiter)) continue;
      const end = this.#crlf && at > start && data[at - 1] === 13 ? at - 1 : at;
      pieces.push(data.subarray(start, end));
      start = at + width;
      at = start - 1;
    }
    // A copy of the tail only: the pieces above stay views of this chunk.
    this.#carry = start === data.length ? EMPTY : data.slice(start);
    return pieces;
  }

  end(): Uint8Array[] {
    const carry = this.#carry;
    this.#carry = EMPTY;
    if (carry.length === 0) return [];
    return [this.#crlf && carry[carry.length - 1] === 13 ? carry.subarray(0, -1) : carry];
  }
}

const EMPTY = new Uint8Array(0);

function startsWith(data: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > data.length) return false;
  for (let i = 1; i < prefix.length; i++) if (data[at + i] !== prefix[i]) return false;
  return true;
}

/**
 * The input as batches of messages: --message (one, as it is), or --file / stdin split at the
 * delimiter, or read whole (--whole-file).
 */
async function* messageBatches(
  values: { file?: string; message?: string; delimiter?: string; "whole-file"?: boolean },
): AsyncGenerator<Uint8Array[]> {
  if (values.message !== undefined) {
    yield [new TextEncoder().encode(values.message)];
    return;
  }
  const stream = values.file !== undefined
    ? fs.createReadStream(values.file, { highWaterMark: 256 * 1024 })
    : process.stdin as AsyncIterable<Uint8Array>;
  if (values["whole-file"]) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    yield [Buffer.concat(chunks)];
    return;
  }
  const delimiter = values.delimiter === undefined ? "\n" : unescape(values.delimiter);
  const splitter = new DelimitedSplitter(Buffer.from(delimiter), values.delimiter === undefined);
  for await (const chunk of stream) yield splitter.push(chunk);
  yield splitter.end();
}

function report(
  summary: ProduceSummary,
  options: { format: "text" | "json"; topic: string; file?: string },
): void {
  if (options.format === "json") {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  const lines = [
    `Produced ${summary.acknowledged.toLocaleString("en-US")} messages (${
      formatBytes(summary.bytes)
    }) in ${summary.seconds.toFixed(2)} s: ${
      formatRate(summary.acknowledged, summary.seconds)
    } msg/s, ${summary.failed} failed, ${summary.indeterminate} indeterminate`,
  ];
  for (const failure of summary.failures) {
    lines.push(`  failed: line ${failure.line}: ${failure.error}`);
  }
  if (summary.failuresNotShown > 0) {
    lines.push(`  ... and ${summary.failuresNotShown.toLocaleString("en-US")} more failed`);
  }
  if (summary.indeterminate > 0) {
    const shown = summary.indeterminateLines.slice(0, RANGES_SHOWN_MAX).map(([first, last]) =>
      first === last ? `${first}` : `${first}-${last}`
    );
    const more = summary.indeterminateLines.length - shown.length;
    lines.push(
      `  indeterminate: line${summary.indeterminate > 1 ? "s" : ""} ${shown.join(", ")}${
        more > 0 ? ` and ${more} more runs` : ""
      } (in flight when the connection broke or unanswered: each may or may not be stored)`,
    );
  }
  if (summary.unsent > 0) lines.push(`  unsent: ${summary.unsent} lines read but never written`);
  if (summary.stopped === "gaveUp") lines.push(`Gave up: ${summary.reason}`);
  if (summary.stopped === "interrupted") lines.push("Stopped by Ctrl-C");
  if (summary.resumeFromLine !== null) {
    const from = summary.resumeFromLine;
    const source = options.file ?? "INPUT";
    lines.push(
      `Resume from line ${from}: tail -n +${from} ${source} | metaq produce ${options.topic}` +
        (summary.indeterminate > 0 ? " (the indeterminate lines above come before it)" : ""),
    );
  }
  process.stderr.write(`${lines.join("\n")}\n`);
}

/** Sorted numbers as [first, last] runs of consecutive ones. */
function ranges(numbers: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const number of numbers) {
    const last = runs[runs.length - 1];
    if (last && number === last[1] + 1) last[1] = number;
    else runs.push([number, number]);
  }
  return runs;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
