/** @module `metaq produce`: one message per input line, pipelined, every ack awaited. */
import * as fs from "node:fs";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { Producer } from "../lib/client/producer.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  formatBytes,
  formatRate,
  integerFlag,
  parseFlags,
  Progress,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq produce TOPIC [options]

Sends one message per line of stdin (or --file), or a single --message. Waits for every
acknowledgement; prints a summary on stderr and exits non-zero if any message failed.

Options:
  --broker HOST:PORT[,...]  broker(s) to send to (default 127.0.0.1:8123, or $METAQ_BROKER)
  --partition N             send every message to partition N
  --key KEY                 route by key hash (same key, same partition, order kept)
  --attribute TEXT          attach a MetaQ message attribute to every message
  --file FILE               read lines from FILE instead of stdin
  --message TEXT            send one message TEXT and exit
  --window N                unacknowledged messages in flight (default 1024)
  --timeout MS              time allowed for each acknowledgement (default 10000)

Examples:
  echo hello | metaq produce orders
  seq 1000000 | metaq produce numbers --partition 0
  metaq produce orders --message '{"id":1}' --key customer-7`;

const FLAGS = {
  broker: { type: "string" },
  partition: { type: "string" },
  key: { type: "string" },
  attribute: { type: "string" },
  file: { type: "string" },
  message: { type: "string" },
  window: { type: "string" },
  timeout: { type: "string" },
  ...SECURITY_FLAGS,
} as const;

const FAILURES_SHOWN_MAX = 5;

export const produce: CommandSpec = {
  name: "produce",
  summary: "send messages, one per line",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("produce", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const topic = positionals[0];
    if (!topic) throw new CliError("Cannot produce: give a TOPIC (see 'metaq produce --help')");
    if (values.partition !== undefined && values.key !== undefined) {
      throw new CliError("Cannot combine --partition and --key");
    }
    const partition = integerFlag("partition", values.partition, { min: 0, max: 1_000_000 });
    const windowMax = integerFlag("window", values.window, { min: 1, max: 100_000 }) ?? 1024;
    const timeout = integerFlag("timeout", values.timeout, { min: 1, max: 3_600_000 }) ?? 10_000;
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      requestTimeoutMs: timeout,
      reconnectAttemptsMax: 3,
      ...clientSecurity(values),
    });
    try {
      await client.connect();
      const producer = new Producer(client, { windowMax });
      const summary = await sendAll(producer, topic, lines(values), {
        partition,
        key: values.key,
        attribute: values.attribute,
      });
      return report(summary);
    } catch (error) {
      throw new CliError(`Cannot produce to ${topic}: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

interface Summary {
  sent: number;
  failed: number;
  bytes: number;
  seconds: number;
  failures: string[];
}

async function sendAll(
  producer: Producer,
  topic: string,
  input: AsyncIterable<Uint8Array>,
  options: { partition?: number; key?: string; attribute?: string },
): Promise<Summary> {
  const summary: Summary = { sent: 0, failed: 0, bytes: 0, seconds: 0, failures: [] };
  const progress = new Progress();
  const started = performance.now();
  let acked = 0;
  for await (const line of input) {
    await producer.whenWritable();
    summary.sent += 1;
    summary.bytes += line.length;
    producer.send(topic, line, options).then(
      () => acked += 1,
      (error) => {
        summary.failed += 1;
        if (summary.failures.length < FAILURES_SHOWN_MAX) {
          summary.failures.push(describeError(error));
        }
      },
    );
    progress.update(() =>
      `produced ${acked.toLocaleString("en-US")} of ${summary.sent.toLocaleString("en-US")} (${
        formatRate(acked, (performance.now() - started) / 1000)
      } msg/s)`
    );
  }
  await producer.flush();
  progress.done();
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

function report(summary: Summary): number {
  const ok = summary.sent - summary.failed;
  process.stderr.write(
    `Produced ${ok.toLocaleString("en-US")} messages (${formatBytes(summary.bytes)}) in ${
      summary.seconds.toFixed(2)
    } s: ` +
      `${formatRate(ok, summary.seconds)} msg/s, ${summary.failed} failed\n`,
  );
  for (const failure of summary.failures) process.stderr.write(`  failed: ${failure}\n`);
  return summary.failed > 0 ? 1 : 0;
}

/** Lines of the input as bytes, without their line ending; an empty last line is dropped. */
async function* lines(values: { file?: string; message?: string }): AsyncGenerator<Uint8Array> {
  if (values.message !== undefined) {
    yield new TextEncoder().encode(values.message);
    return;
  }
  let stream: AsyncIterable<Uint8Array>;
  if (values.file) {
    if (!fs.existsSync(values.file)) throw new CliError(`Cannot read ${values.file}: no such file`);
    stream = fs.createReadStream(values.file);
  } else {
    stream = process.stdin as AsyncIterable<Uint8Array>;
  }
  let carry: Uint8Array = new Uint8Array(0);
  for await (const chunk of stream) {
    const data = carry.length ? concat(carry, chunk) : chunk;
    let start = 0;
    for (let newline = data.indexOf(10); newline >= 0; newline = data.indexOf(10, start)) {
      const end = newline > start && data[newline - 1] === 13 ? newline - 1 : newline;
      yield data.subarray(start, end);
      start = newline + 1;
    }
    carry = data.slice(start);
  }
  if (carry.length > 0) yield carry[carry.length - 1] === 13 ? carry.subarray(0, -1) : carry;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
