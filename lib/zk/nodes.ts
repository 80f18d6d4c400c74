/**
 * @module Path helpers over ZkClient that behave as MetaQ's ZkUtils does: parents created as
 * persistent nodes with no data (zkclient's createPersistent(path, true)), ephemeral and
 * persistent writes that create what is missing, deletes that ignore a node already gone.
 */
import type { ZkClient } from "./client.ts";
import { isZkError } from "./protocol.ts";

/** Creates `path` and its missing ancestors as persistent nodes without data. */
export async function ensurePath(client: ZkClient, path: string): Promise<void> {
  if (path === "/" || path === "") return;
  try {
    await client.create(path, null, "persistent");
  } catch (error) {
    if (isZkError(error, "nodeExists")) return;
    if (!isZkError(error, "noNode")) throw error;
    await ensurePath(client, parentOf(path));
    try {
      await client.create(path, null, "persistent");
    } catch (again) {
      if (!isZkError(again, "nodeExists")) throw again;
    }
  }
}

/** Creates an ephemeral node, creating its parents first when they are missing. */
export async function createEphemeral(client: ZkClient, path: string, data: string): Promise<void> {
  try {
    await client.create(path, data, "ephemeral");
  } catch (error) {
    if (!isZkError(error, "noNode")) throw error;
    await ensurePath(client, parentOf(path));
    await client.create(path, data, "ephemeral");
  }
}

/** Writes a node's data, creating it (persistent, with parents) when it is missing. */
export async function writePersistent(client: ZkClient, path: string, data: string): Promise<void> {
  try {
    await client.setData(path, data);
  } catch (error) {
    if (!isZkError(error, "noNode")) throw error;
    await ensurePath(client, parentOf(path));
    try {
      await client.create(path, data, "persistent");
    } catch (again) {
      if (!isZkError(again, "nodeExists")) throw again;
      await client.setData(path, data);
    }
  }
}

/** Deletes a node; true if it was deleted here, false if it was already gone. */
export async function deleteIfExists(
  client: ZkClient,
  path: string,
  version = -1,
): Promise<boolean> {
  try {
    await client.delete(path, version);
    return true;
  } catch (error) {
    if (isZkError(error, "noNode")) return false;
    throw error;
  }
}

/** A node's data as UTF-8 text, or undefined when it does not exist. */
export async function readText(client: ZkClient, path: string): Promise<string | undefined> {
  try {
    const { data } = await client.getData(path);
    return data === null ? "" : new TextDecoder().decode(data);
  } catch (error) {
    if (isZkError(error, "noNode")) return undefined;
    throw error;
  }
}

/** A node's children, or none when it does not exist. */
export async function childrenOf(client: ZkClient, path: string): Promise<string[]> {
  try {
    return await client.getChildren(path);
  } catch (error) {
    if (isZkError(error, "noNode")) return [];
    throw error;
  }
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}
