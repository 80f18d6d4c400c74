import { expect, test } from "bun:test";
import { replicasOf } from "../../../lib/cluster/placement.ts";

test("placement gives every partition the same replicas on every node, spread over the nodes", () => {
  const nodes = [1, 2, 3, 4, 5];
  const load = new Map<number, number>();
  for (let partition = 0; partition < 300; partition++) {
    const replicas = replicasOf("orders", partition, nodes, 3);
    expect(replicas).toEqual(replicasOf("orders", partition, [...nodes].reverse(), 3));
    expect(new Set(replicas).size).toBe(3);
    for (const id of replicas) load.set(id, (load.get(id) ?? 0) + 1);
  }
  for (const count of load.values()) expect(count).toBeGreaterThan(120); // 180 each on average
  expect(replicasOf("t", 0, [3, 1, 2], 3)).toEqual([1, 2, 3]);
  expect(replicasOf("__meta", 0, nodes, 3)).toEqual(nodes);
});
