/**
 * MetaQ's DEFAULT and CONSIST strategies. The expected shares were computed by the original Java
 * client's own classes (DefaultLoadBalanceStrategy, ConsisHashStrategy from Metamorphosis 1.4.6)
 * for 3 brokers x 12 partitions and consumers g_a-1, g_b-2, g_c-3.
 */
import { expect, test } from "bun:test";
import { consistentShare, defaultShare } from "../../../lib/client/zk_balance.ts";

const partitions: string[] = [];
for (let broker = 0; broker < 3; broker++) {
  for (let partition = 0; partition < 12; partition++) partitions.push(`${broker}-${partition}`);
}
partitions.sort();
const consumers = ["g_a-1", "g_b-2", "g_c-3"];
const list = (text: string) => text.split(", ");

test("CONSIST gives each consumer the partitions the Java client gives it", () => {
  const java: Record<string, string> = {
    "g_a-1": "0-1, 0-5, 0-7, 0-9, 1-2, 1-4, 1-9, 2-4",
    "g_b-2":
      "0-11, 0-2, 0-3, 0-4, 0-6, 1-0, 1-1, 1-10, 1-11, 1-7, 2-0, 2-1, 2-2, 2-3, 2-5, 2-6, 2-7",
    "g_c-3": "0-0, 0-10, 0-8, 1-3, 1-5, 1-6, 1-8, 2-10, 2-11, 2-8, 2-9",
  };
  for (const consumer of consumers) {
    expect(consistentShare(consumer, consumers, partitions).sort(), consumer)
      .toEqual(list(java[consumer]));
  }
});

test("DEFAULT gives contiguous slices of the string-sorted partitions", () => {
  expect(defaultShare("g_a-1", consumers, partitions)).toEqual(
    list("0-0, 0-1, 0-10, 0-11, 0-2, 0-3, 0-4, 0-5, 0-6, 0-7, 0-8, 0-9"),
  );
  expect(defaultShare("g_c-3", consumers, partitions)).toEqual(
    list("2-0, 2-1, 2-10, 2-11, 2-2, 2-3, 2-4, 2-5, 2-6, 2-7, 2-8, 2-9"),
  );
  // 5 partitions over 2 consumers: the first gets the extra one.
  const five = ["1-0", "1-1", "1-2", "2-0", "2-1"];
  expect(defaultShare("a", ["a", "b"], five)).toEqual(["1-0", "1-1", "1-2"]);
  expect(defaultShare("b", ["a", "b"], five)).toEqual(["2-0", "2-1"]);
  // More consumers than partitions: the last ones get nothing; a stranger gets nothing.
  expect(defaultShare("c", ["a", "b", "c"], ["1-0", "1-1"])).toEqual([]);
  expect(defaultShare("x", ["a"], five)).toEqual([]);
});

test("every partition has exactly one owner under either strategy", () => {
  for (const share of [consistentShare, defaultShare]) {
    const owned = consumers.flatMap((consumer) => share(consumer, consumers, partitions));
    expect(owned.sort()).toEqual([...partitions].sort());
  }
});
