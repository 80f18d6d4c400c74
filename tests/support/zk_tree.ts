/** @module Reads a ZooKeeper subtree for tests: every node's path, data and kind, sorted by path. */
import type { ZkClient } from "../../lib/zk/client.ts";
import { childrenOf } from "../../lib/zk/nodes.ts";
import { isZkError } from "../../lib/zk/protocol.ts";

export interface TreeNode {
  /** The node's data as text; null when the node holds no data at all (zkclient's parents). */
  readonly data: string | null;
  readonly ephemeral: boolean;
}

/** `root` and everything under it, path -> node; empty when `root` does not exist. */
export async function readTree(client: ZkClient, root: string): Promise<Record<string, TreeNode>> {
  const tree: Record<string, TreeNode> = {};
  const visit = async (path: string) => {
    let node;
    try {
      node = await client.getData(path);
    } catch (error) {
      if (isZkError(error, "noNode")) return; // removed while we walked
      throw error;
    }
    tree[path] = {
      data: node.data === null ? null : new TextDecoder("utf-8", { fatal: true }).decode(node.data),
      ephemeral: node.stat.ephemeralOwner !== 0n,
    };
    for (const child of (await childrenOf(client, path)).sort()) {
      await visit(path === "/" ? `/${child}` : `${path}/${child}`);
    }
  };
  await visit(root);
  return Object.fromEntries(Object.entries(tree).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
