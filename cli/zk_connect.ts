/**
 * @module The ZooKeeper flags shared by `metaq consume --group`, `metaq produce` and `metaq zk`:
 * `--zk-connect` turns on ZooKeeper mode (brokers, partitions and group members found in a MetaQ
 * fleet's ZooKeeper, docs/zookeeper.md) and `--zk-root` names MetaQ's root there.
 */
import { describeError } from "../lib/errors.ts";
import { normalizeRoot } from "../lib/config/zookeeper_config.ts";
import { ZkClient } from "../lib/zk/client.ts";
import { MetaLayout } from "../lib/zk/meta_layout.ts";
import { parseConnectString } from "../lib/zk/client.ts";
import { CliError } from "./common.ts";

export const ZK_FLAGS = {
  "zk-connect": { type: "string" },
  "zk-root": { type: "string" },
} as const;

export const ZK_USAGE =
  `  --zk-connect LIST         ZooKeeper mode: find brokers through a MetaQ fleet's ZooKeeper,
                            host:port[,host:port...][/chroot] (MetaQ's zk.zkConnect)
  --zk-root PATH            root of MetaQ's nodes there (zk.zkRoot, default /meta)`;

/** How long a command waits for its first ZooKeeper session (MetaQ's default is 30 s). */
const CONNECTION_TIMEOUT_MS = 10_000;
const SESSION_TIMEOUT_MS = 30_000;

export interface ZkTarget {
  readonly connect: string;
  readonly layout: MetaLayout;
}

/**
 * The ZooKeeper the flags name, checked (a malformed list is a usage error); undefined when
 * `--zk-connect` is absent, and then `--zk-root` alone is an error too.
 */
export function zkTarget(
  values: { "zk-connect"?: string; "zk-root"?: string },
): ZkTarget | undefined {
  const connect = values["zk-connect"];
  if (connect === undefined) {
    if (values["zk-root"] !== undefined) {
      throw new CliError("Cannot use --zk-root without --zk-connect");
    }
    return undefined;
  }
  try {
    parseConnectString(connect);
  } catch (error) {
    throw new CliError(`Cannot use --zk-connect ${connect}: ${describeError(error)}`);
  }
  const root = values["zk-root"] ?? "/meta";
  if (root.trim() === "" || root === "/" || root.includes("//")) {
    throw new CliError(`Cannot use --zk-root ${root}: expected a path such as /meta`);
  }
  return { connect, layout: new MetaLayout(normalizeRoot(root)) };
}

/** Opens a session, or fails with exit 1 naming the servers. */
export async function openZooKeeper(target: ZkTarget): Promise<ZkClient> {
  try {
    return await ZkClient.open({
      connect: target.connect,
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
      connectionTimeoutMs: CONNECTION_TIMEOUT_MS,
    });
  } catch (error) {
    throw new CliError(describeError(error), 1);
  }
}
