/**
 * @module `metaq bench`: load a broker and measure it, in the spirit of `nats bench` and Kafka's
 * perf tools. `produce` keeps W puts in flight on each of C connections and awaits every ack;
 * `consume` reads a backlog with raw 1 MiB `get`s, walking 20-byte headers without copying
 * payloads; `latency` sends at a fixed rate and measures send→arrival through a following
 * consumer. Every run is capped by --messages and --duration. The drivers are lib/bench/load.ts.
 */
import { MetaqClient } from "../lib/client/client.ts";
import type { LatencySummary } from "../lib/bench/histogram.ts";
import {
  type ClientSecurity,
  type LatencyResult,
  type LiveCounters,
  type LoadResult,
  type ProduceApi,
  runConsume,
  runLatency,
  runProduce,
  STAMP_BYTES,
} from "../lib/bench/load.ts";
import { describeError } from "../lib/errors.ts";
import { MESSAGE_BYTES_MAX } from "../lib/limits.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatRate,
  integerFlag,
  parseFlags,
  Progress,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq bench produce|consume|latency [options]

Measures a running broker. Prints msgs/s, MB/s (payload, 10^6 bytes) and latency percentiles;
a live progress line on a terminal. Every run stops at --messages or --duration, whichever
comes first. Nothing is deleted: point it at a broker you can fill.

  produce   C connections, each with W puts in flight; every ack awaited (latency = put→ack)
  consume   reads the topic from its start with raw gets (latency = get→value)
  latency   sends --rate msgs/s on one connection; a second follows the partition with gets
            and measures send→arrival (the payload carries its send time)

Options:
  --topic T              topic (default bench)
  --messages N           messages to send or read (default 1000000; latency: rate x duration)
  --size BYTES           payload bytes (default 100)
  --connections C        connections (default 1)
  --pipeline W           puts in flight per connection (default 1024)
  --partitions N         use partitions 0..N-1 (default: all of the topic's, asked from the broker)
  --duration SECONDS     time cap (default 60; latency: how long to send, default 10)
  --rate N               latency: messages per second (default 5000)
  --max-size BYTES       consume: bytes per get (default 1048576)
  --group G              consume: group reported to the broker (default bench)
  --poll-delay-ms MS     latency: pause after an empty get (default 0: ask again at once)
  --long-poll-ms MS      latency: follow with metaq's long poll (fetch), waiting up to MS at the
                         end (default 1000); 0 follows with MetaQ's get
  --api connection|producer
                         produce through BrokerConnection with a callback per reply (default),
                         or through the high-level Producer (one promise chain per message)
  --timeout MS           time allowed for each reply (default 30000)
  --json                 print one JSON object instead of the text summary

Examples:
  metaq bench produce --messages 1000000 --size 100 --pipeline 1024
  metaq bench produce --size 1024 --connections 4 --partitions 4
  metaq bench consume --messages 1000000
  metaq bench latency --rate 5000 --duration 10

${CONNECTION_USAGE}`;

const FLAGS = {
  broker: { type: "string" },
  topic: { type: "string" },
  messages: { type: "string" },
  size: { type: "string" },
  connections: { type: "string" },
  pipeline: { type: "string" },
  partitions: { type: "string" },
  duration: { type: "string" },
  rate: { type: "string" },
  "max-size": { type: "string" },
  group: { type: "string" },
  "poll-delay-ms": { type: "string" },
  "long-poll-ms": { type: "string" },
  api: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  ...SECURITY_FLAGS,
} as const;

const MODES = ["produce", "consume", "latency"] as const;
type Mode = typeof MODES[number];

interface Settings {
  readonly mode: Mode;
  readonly broker: string;
  readonly topic: string;
  readonly messages: number;
  readonly sizeBytes: number;
  readonly connections: number;
  readonly pipeline: number;
  readonly partitionCount?: number;
  readonly durationMs: number;
  readonly rate: number;
  readonly maxSizeBytes: number;
  readonly group: string;
  readonly pollDelayMs: number;
  readonly longPollMs: number;
  readonly api: ProduceApi;
  readonly timeoutMs: number;
  readonly json: boolean;
  readonly security: ClientSecurity;
}

export const bench: CommandSpec = {
  name: "bench",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("bench", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const settings = readSettings(positionals[0], values);
    const partitions = await partitionsOf(settings);
    const live: LiveCounters = { messages: 0, bytes: 0, failures: 0 };
    const progress = new Progress();
    const started = performance.now();
    const timer = setInterval(() => progress.update(() => progressLine(live, started)), 200);
    let result: LoadResult | LatencyResult;
    try {
      result = await runMode(settings, partitions, live);
    } catch (error) {
      throw new CliError(`Cannot run bench ${settings.mode}: ${describeError(error)}`, 1);
    } finally {
      clearInterval(timer);
      progress.done();
    }
    const report = reportOf(settings, partitions, result);
    console.log(settings.json ? JSON.stringify(report) : renderReport(report));
    if (result.failures > 0) {
      console.error(
        `metaq bench: ${result.failures} requests failed; first: ${result.firstError ?? "?"}`,
      );
      return 1;
    }
    return 0;
  },
};

function readSettings(
  mode: string | undefined,
  values: Record<string, string | boolean | undefined>,
): Settings {
  if (!MODES.includes(mode as Mode)) {
    throw new CliError("Cannot bench: give produce, consume or latency (see 'metaq bench --help')");
  }
  const string = (name: string) => values[name] as string | undefined;
  const api = (string("api") ?? "connection") as ProduceApi;
  if (api !== "connection" && api !== "producer") {
    throw new CliError(`Cannot use --api ${api}: expected connection or producer`);
  }
  const sizeMin = mode === "latency" ? STAMP_BYTES : 1;
  const durationDefault = mode === "latency" ? 10 : 60;
  return {
    mode: mode as Mode,
    broker: brokerList(string("broker"))[0],
    topic: string("topic") ?? "bench",
    messages: integerFlag("messages", string("messages"), { min: 1, max: 1e12 }) ?? 1_000_000,
    sizeBytes: integerFlag("size", string("size"), { min: sizeMin, max: MESSAGE_BYTES_MAX }) ??
      100,
    connections: integerFlag("connections", string("connections"), { min: 1, max: 256 }) ?? 1,
    pipeline: integerFlag("pipeline", string("pipeline"), { min: 1, max: 100_000 }) ?? 1024,
    partitionCount: integerFlag("partitions", string("partitions"), { min: 1, max: 1024 }),
    durationMs: (integerFlag("duration", string("duration"), { min: 1, max: 86_400 }) ??
      durationDefault) * 1000,
    rate: integerFlag("rate", string("rate"), { min: 1, max: 10_000_000 }) ?? 5000,
    maxSizeBytes: integerFlag("max-size", string("max-size"), { min: 64, max: 64 << 20 }) ??
      1024 * 1024,
    group: string("group") ?? "bench",
    pollDelayMs: integerFlag("poll-delay-ms", string("poll-delay-ms"), { min: 0, max: 10_000 }) ??
      0,
    longPollMs: integerFlag("long-poll-ms", string("long-poll-ms"), { min: 0, max: 5000 }) ?? 1000,
    api,
    timeoutMs: integerFlag("timeout", string("timeout"), { min: 1, max: 3_600_000 }) ?? 30_000,
    json: values.json === true,
    security: clientSecurity(values),
  };
}

/** Partitions 0..N-1, N from --partitions or from the broker's `meta` answer. */
async function partitionsOf(settings: Settings): Promise<number[]> {
  let count = settings.partitionCount;
  if (count === undefined) {
    const client = new MetaqClient({
      brokers: [settings.broker],
      reconnectAttemptsMax: 1,
      ...settings.security,
    });
    try {
      count = (await client.topicMetadata(settings.topic)).partitions;
    } catch (error) {
      throw new CliError(
        `Cannot ask ${settings.broker} about topic ${settings.topic}: ${describeError(error)}`,
        1,
      );
    } finally {
      client.close();
    }
  }
  return Array.from({ length: count }, (_, index) => index);
}

function runMode(
  settings: Settings,
  partitions: number[],
  live: LiveCounters,
): Promise<LoadResult | LatencyResult> {
  const common = {
    broker: settings.broker,
    topic: settings.topic,
    durationMs: settings.durationMs,
    requestTimeoutMs: settings.timeoutMs,
    live,
    security: settings.security,
  };
  if (settings.mode === "produce") {
    return runProduce({
      ...common,
      partitions,
      messages: settings.messages,
      sizeBytes: settings.sizeBytes,
      connections: settings.connections,
      pipeline: settings.pipeline,
      api: settings.api,
    });
  }
  if (settings.mode === "consume") {
    return runConsume({
      ...common,
      partitions,
      group: settings.group,
      messages: settings.messages,
      connections: settings.connections,
      maxSizeBytes: settings.maxSizeBytes,
    });
  }
  return runLatency({
    ...common,
    partition: partitions[0],
    rate: settings.rate,
    sizeBytes: settings.sizeBytes,
    pollDelayMs: settings.pollDelayMs,
    longPollMs: settings.longPollMs,
  });
}

function progressLine(live: LiveCounters, started: number): string {
  const seconds = (performance.now() - started) / 1000;
  return `${live.messages.toLocaleString("en-US")} msgs, ` +
    `${formatRate(live.messages, seconds)} msgs/s, ` +
    `${(live.bytes / 1e6 / Math.max(seconds, 1e-9)).toFixed(1)} MB/s, ` +
    `${live.failures} failed, ${seconds.toFixed(1)} s`;
}

/** What `--json` prints and the comparison harness reads. */
export interface BenchReport {
  readonly mode: Mode;
  readonly api?: ProduceApi;
  readonly sizeBytes: number;
  readonly connections: number;
  readonly pipeline: number;
  readonly partitions: number;
  readonly messages: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly messagesPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly failures: number;
  readonly hitDeadline: boolean;
  readonly latency: LatencySummary;
  readonly sent?: number;
  readonly ackLatency?: LatencySummary;
}

function reportOf(
  settings: Settings,
  partitions: number[],
  result: LoadResult | LatencyResult,
): BenchReport {
  const latencyResult = "ackLatency" in result ? result : undefined;
  return {
    mode: settings.mode,
    api: settings.mode === "produce" ? settings.api : undefined,
    sizeBytes: settings.sizeBytes,
    connections: settings.connections,
    pipeline: settings.pipeline,
    partitions: partitions.length,
    messages: result.messages,
    bytes: result.bytes,
    seconds: result.seconds,
    messagesPerSecond: result.messages / result.seconds,
    megabytesPerSecond: result.bytes / 1e6 / result.seconds,
    failures: result.failures,
    hitDeadline: result.hitDeadline,
    latency: result.latency.summary(),
    sent: latencyResult?.sent,
    ackLatency: latencyResult?.ackLatency.summary(),
  };
}

function renderReport(report: BenchReport): string {
  const shape = report.mode === "produce"
    ? `${report.connections} connection(s) x ${report.pipeline} in flight, api ${report.api}`
    : report.mode === "consume"
    ? `${report.connections} connection(s), raw get`
    : `fixed rate, ${report.sent} sent`;
  const latencyName = { produce: "ack", consume: "fetch", latency: "end-to-end" }[report.mode];
  const lines = [
    `metaq bench ${report.mode}: ${report.messages.toLocaleString("en-US")} msgs x ` +
    `${report.sizeBytes} B, ${report.partitions} partition(s), ${shape}`,
    `  ${formatRate(report.messages, report.seconds)} msgs/s  ` +
    `${report.megabytesPerSecond.toFixed(1)} MB/s  in ${report.seconds.toFixed(2)} s` +
    (report.hitDeadline ? "  (stopped by --duration)" : ""),
    `  ${latencyName} latency  ${latencyLine(report.latency)}`,
  ];
  if (report.ackLatency) lines.push(`  ack latency  ${latencyLine(report.ackLatency)}`);
  if (report.mode === "latency" && report.sent !== undefined && report.messages < report.sent) {
    lines.push(`  ${report.sent - report.messages} sent messages never arrived`);
  }
  return lines.join("\n");
}

function latencyLine(summary: LatencySummary): string {
  return `p50 ${formatMicros(summary.p50Us)}  p99 ${formatMicros(summary.p99Us)}  ` +
    `max ${formatMicros(summary.maxUs)}`;
}

export function formatMicros(us: number): string {
  if (us < 1000) return `${Math.round(us)} us`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}
