import { expect, test } from "bun:test";
import { Broker } from "../../../lib/broker/broker.ts";
import { ManualClock } from "../../../lib/clock.ts";
import { buildConfig } from "../../../lib/config/config.ts";
import { partitionFacts } from "../../../lib/http/partition_facts.ts";
import {
  HISTORY_POINTS_MAX,
  type RateFigures,
  RateTracker,
  STALE_MS,
} from "../../../lib/http/rates.ts";
import { silentLogger } from "../../../lib/log.ts";
import { Prng } from "../../../lib/prng.ts";
import { MessageIdGenerator } from "../../../lib/protocol/message_id.ts";
import type { Reply } from "../../../lib/protocol/reply.ts";
import { LocalLogs } from "../../../lib/store/local_logs.ts";
import { MessageStore } from "../../../lib/store/message_store.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";

async function memoryBroker(clock: ManualClock): Promise<Broker> {
  const config = buildConfig({ overrides: { dataPath: "/data", numPartitions: "2" } });
  const store = await MessageStore.open({
    storage: new MemoryStorage(),
    config,
    clock,
    logger: silentLogger,
    verifyAll: true,
    repair: false,
  });
  return new Broker({
    config,
    logs: new LocalLogs(store, silentLogger),
    ids: new MessageIdGenerator({ brokerId: 0, clock }),
    clock,
    logger: silentLogger,
    random: new Prng(7),
  });
}

function put(broker: Broker, topic: string, partition: number, body: string): Promise<Reply> {
  return new Promise((resolve) =>
    broker.put(
      {
        kind: "put",
        topic,
        partition,
        flag: 0,
        checksum: -1,
        opaque: 0,
        body: new TextEncoder().encode(body),
      },
      { connectionId: 1, peer: "test" },
      resolve,
    )
  );
}

function get(broker: Broker, topic: string, partition: number, maxSize: number): Promise<Reply> {
  return new Promise((resolve) =>
    broker.get({
      kind: "get",
      topic,
      group: "g",
      partition,
      offset: 0,
      offsetIsLongMax: false,
      maxSize,
      opaque: 1,
    }, resolve)
  );
}

test("rates are the change between the last two samples, per partition and in total", async () => {
  const clock = new ManualClock();
  const broker = await memoryBroker(clock);
  const rates = new RateTracker(clock);
  const facts = () => partitionFacts({ broker, clock });
  await put(broker, "orders", 0, "warm-up");
  await put(broker, "orders", 1, "warm-up");
  rates.sample(facts);
  expect(rates.total().produceMessagesPerSecond).toBe(0);
  for (let i = 0; i < 10; i++) await put(broker, "orders", 0, "0123456789");
  for (let i = 0; i < 4; i++) await put(broker, "orders", 1, "0123456789");
  await get(broker, "orders", 0, 270);
  clock.advance(2000);
  rates.sample(facts);
  expect(rates.partition("orders-0")).toEqual({
    produceMessagesPerSecond: 5,
    produceBytesPerSecond: 150,
    consumeBytesPerSecond: 135,
  });
  expect(rates.partition("orders-1").produceMessagesPerSecond).toBe(2);
  expect(rates.total()).toEqual({
    produceMessagesPerSecond: 7,
    produceBytesPerSecond: 210,
    consumeBytesPerSecond: 135,
  });
  expect(rates.partition("missing-0")).toEqual({
    produceMessagesPerSecond: 0,
    produceBytesPerSecond: 0,
    consumeBytesPerSecond: 0,
  });
});

test("samples closer than a second are skipped and the history keeps the last minute", async () => {
  const clock = new ManualClock();
  const broker = await memoryBroker(clock);
  const rates = new RateTracker(clock);
  const facts = () => partitionFacts({ broker, clock });
  await put(broker, "orders", 0, "first");
  rates.sample(facts);
  await put(broker, "orders", 0, "x");
  clock.advance(500);
  rates.sample(facts); // too soon: ignored, so the append still counts in the next rate
  clock.advance(500);
  rates.sample(facts);
  expect(rates.total().produceMessagesPerSecond).toBe(1);
  for (let second = 0; second < HISTORY_POINTS_MAX + 5; second++) {
    clock.advance(1000);
    rates.sample(facts);
  }
  expect(rates.history().length).toBe(HISTORY_POINTS_MAX);
  expect(rates.history().at(-1)!.timeMs).toBe(clock.wallMs());
});

/** Figures of `orders-0` as node `source` shares them. */
function figures(source: string, timeMs: number, messages: number, end: number): RateFigures {
  return { name: "orders-0", source, timeMs, messages, endOffset: end, servedBytes: 0 };
}

test("rates follow the clock of the node that shared the figures, not the sampling times", () => {
  const clock = new ManualClock();
  const rates = new RateTracker(clock);
  rates.sample(() => [figures("2", 50_000, 100, 3000)]);
  clock.advance(1000);
  // The same figures heard again (the leader has not spoken since): the rate stays as it was.
  rates.sample(() => [figures("2", 50_000, 100, 3000)]);
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(0);
  clock.advance(1000);
  // Two seconds of the leader's clock passed between the figures, whatever passed here.
  rates.sample(() => [figures("2", 52_000, 140, 4200)]);
  expect(rates.partition("orders-0")).toEqual({
    produceMessagesPerSecond: 20,
    produceBytesPerSecond: 600,
    consumeBytesPerSecond: 0,
  });
  clock.advance(1000);
  rates.sample(() => [figures("2", 52_000, 140, 4200)]);
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(20);
});

test("a new leader starts the partition over, and figures gone silent read as zero", () => {
  const clock = new ManualClock();
  const rates = new RateTracker(clock);
  rates.sample(() => [figures("2", 50_000, 100, 3000)]);
  clock.advance(1000);
  rates.sample(() => [figures("2", 51_000, 110, 3300)]);
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(10);
  clock.advance(1000);
  // Node 3 leads now: its clock and counters are its own, so there is no rate until it speaks twice.
  rates.sample(() => [figures("3", 7_000, 5, 3300)]);
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(0);
  clock.advance(1000);
  rates.sample(() => [figures("3", 8_000, 15, 3600)]);
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(10);
  for (let waited = 0; waited < STALE_MS; waited += 1000) {
    clock.advance(1000);
    rates.sample(() => [figures("3", 8_000, 15, 3600)]);
  }
  expect(rates.partition("orders-0").produceMessagesPerSecond).toBe(0);
  rates.sample(() => []);
  expect(rates.total().produceMessagesPerSecond).toBe(0);
});
