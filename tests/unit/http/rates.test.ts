import { expect, test } from "bun:test";
import { Broker } from "../../../lib/broker/broker.ts";
import { type Reply } from "../../../lib/protocol/reply.ts";
import { ManualClock } from "../../../lib/clock.ts";
import { buildConfig } from "../../../lib/config/config.ts";
import { HISTORY_POINTS_MAX, RateTracker } from "../../../lib/http/rates.ts";
import { silentLogger } from "../../../lib/log.ts";
import { MessageIdGenerator } from "../../../lib/protocol/message_id.ts";
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
  const ids = new MessageIdGenerator({ brokerId: 0, clock });
  return new Broker({ config, store, ids, clock, logger: silentLogger });
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

test("rates are the change between the last two samples, per partition and in total", async () => {
  const clock = new ManualClock();
  const broker = await memoryBroker(clock);
  const rates = new RateTracker(broker, clock);
  await put(broker, "orders", 0, "warm-up");
  rates.sample();
  expect(rates.total().produceMessagesPerSecond).toBe(0);
  for (let i = 0; i < 10; i++) await put(broker, "orders", 0, "0123456789");
  for (let i = 0; i < 4; i++) await put(broker, "orders", 1, "0123456789");
  broker.get({
    kind: "get",
    topic: "orders",
    group: "g",
    partition: 0,
    offset: 0,
    offsetIsLongMax: false,
    maxSize: 270,
    opaque: 1,
  });
  clock.advance(2000);
  rates.sample();
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
  const rates = new RateTracker(broker, clock);
  rates.sample();
  await put(broker, "orders", 0, "x");
  clock.advance(500);
  rates.sample(); // too soon: ignored, so the append still counts in the next rate
  clock.advance(500);
  rates.sample();
  expect(rates.total().produceMessagesPerSecond).toBe(1);
  for (let second = 0; second < HISTORY_POINTS_MAX + 5; second++) {
    clock.advance(1000);
    rates.sample();
  }
  expect(rates.history().length).toBe(HISTORY_POINTS_MAX);
  expect(rates.history().at(-1)!.timeMs).toBe(clock.wallMs());
});
