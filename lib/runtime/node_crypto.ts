/**
 * @module `node:crypto`, loaded on first use instead of at start-up: on Bun that module pulls in
 * most of `node:stream` (~10 ms), and a broker hashes only when users are configured (tokens),
 * a consumer group balances (md5), and so on. `process.getBuiltinModule` is synchronous and exists
 * on Bun, Deno 2 and Node 20.16+.
 */
import process from "node:process";

type NodeCrypto = typeof import("node:crypto");

let loaded: NodeCrypto | undefined;

export function nodeCrypto(): NodeCrypto {
  if (loaded) return loaded;
  const getBuiltin = (process as { getBuiltinModule?: (name: string) => unknown })
    .getBuiltinModule;
  if (!getBuiltin) {
    throw new Error(
      "Cannot load node:crypto: this runtime has no process.getBuiltinModule (Bun, Deno 2 or Node 20.16+ needed)",
    );
  }
  return loaded = getBuiltin.call(process, "node:crypto") as NodeCrypto;
}
