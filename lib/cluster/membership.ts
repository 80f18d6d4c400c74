/**
 * @module Node identities, so a node restarted with an empty disk never votes as its old self
 * (replication.md 5.7 rule 5). Each data directory gets a random UUID when it is created, kept
 * in `<dataPath>/cluster/identity`; every node records the UUID it has seen for every node id
 * (`<dataPath>/cluster/members`, each entry with a version). A node with a new UUID for an id
 * that peers know by another UUID is a stranger: peers ignore its Raft messages and it takes
 * no part until an operator runs `metaq cluster replace`, which bumps that id's version to the
 * new UUID; then it joins its groups in repair mode and votes only once caught up.
 *
 * A fresh cluster (every node new, nobody knows anybody) admits everyone: a new node is
 * admitted once a majority of the voters, itself included, have reported their registries and
 * none of them holds another UUID for its id.
 */
import { randomUUID } from "node:crypto";
import { joinPath, makeDirDurably, type Storage } from "../store/storage.ts";

export const CLUSTER_DIR = "cluster";

export interface MemberEntry {
  readonly uuid: string;
  readonly version: number;
}

export interface Identity {
  readonly nodeId: number;
  readonly uuid: string;
  /** Set once the node may vote; a replacement first catches up in repair mode. */
  readonly admitted: boolean;
  /** Admitted through `cluster replace`: its groups start in repair mode. */
  readonly replaced: boolean;
}

export class IdentityError extends Error {
  override readonly name = "IdentityError";
}

/** Reads (or creates) this data directory's identity and the member registry. */
export async function loadMembership(
  storage: Storage,
  dataPath: string,
  nodeId: number,
): Promise<Membership> {
  const dir = joinPath(dataPath, CLUSTER_DIR);
  await makeDirDurably(storage, dir);
  const identityBytes = storage.readFile(joinPath(dir, "identity"));
  let identity: Identity;
  if (identityBytes) {
    identity = JSON.parse(new TextDecoder().decode(identityBytes));
    if (identity.nodeId !== nodeId) {
      throw new IdentityError(
        `Cannot start as node ${nodeId}: data directory ${dataPath} belongs to node ${identity.nodeId}`,
      );
    }
  } else {
    identity = { nodeId, uuid: randomUUID(), admitted: false, replaced: false };
    await storage.writeFileAtomic(joinPath(dir, "identity"), json(identity));
  }
  const membersBytes = storage.readFile(joinPath(dir, "members"));
  const members: Record<string, MemberEntry> = membersBytes
    ? JSON.parse(new TextDecoder().decode(membersBytes))
    : {};
  return new Membership({ storage, dir, identity, members });
}

export class Membership {
  readonly #storage: Storage;
  readonly #dir: string;
  #identity: Identity;
  #members: Record<string, MemberEntry>;
  /** Registries reported by peers since start: node id -> its view of our entry. */
  readonly #reports = new Map<number, MemberEntry | undefined>();
  #saving: Promise<void> = Promise.resolve();

  constructor(
    parts: {
      storage: Storage;
      dir: string;
      identity: Identity;
      members: Record<string, MemberEntry>;
    },
  ) {
    this.#storage = parts.storage;
    this.#dir = parts.dir;
    this.#identity = parts.identity;
    this.#members = parts.members;
    const own = this.#members[String(parts.identity.nodeId)];
    if (!own || own.uuid !== parts.identity.uuid) {
      this.#members[String(parts.identity.nodeId)] = {
        uuid: parts.identity.uuid,
        version: (own?.version ?? 0) + (own ? 1 : 0),
      };
    }
  }

  get identity(): Identity {
    return this.#identity;
  }

  get members(): Readonly<Record<string, MemberEntry>> {
    return this.#members;
  }

  /** Whether `uuid` is the identity this node accepts for node `id` (learning it if new). */
  accepts(id: number, uuid: string): boolean {
    const known = this.#members[String(id)];
    if (!known) {
      this.#members[String(id)] = { uuid, version: 0 };
      this.#save();
      return true;
    }
    return known.uuid === uuid;
  }

  /**
   * Takes in a peer's registry: newer versions of entries win (an operator's replacement
   * spreads this way), and the peer's view of our own entry is noted for admission.
   */
  observe(peerId: number, registry: Readonly<Record<string, MemberEntry>>): void {
    let changed = false;
    for (const [id, entry] of Object.entries(registry)) {
      const known = this.#members[id];
      if (id === String(this.#identity.nodeId)) continue;
      if (!known || entry.version > known.version) {
        this.#members[id] = entry;
        changed = true;
      }
    }
    this.#reports.set(peerId, registry[String(this.#identity.nodeId)]);
    if (changed) this.#save();
  }

  /**
   * Whether this node may take part in its groups now. `voters` is the static voter list.
   * Once true, it is persisted and stays true.
   */
  mayParticipate(voters: readonly number[]): boolean {
    if (this.#identity.admitted) return true;
    const own = this.#identity.uuid;
    const reports = [...this.#reports.values()];
    const strangers = reports.filter((entry) => entry !== undefined && entry.uuid !== own);
    if (strangers.length > 0) return false;
    const replaced = reports.some((entry) => entry?.uuid === own && entry.version > 0);
    // A majority must have spoken: otherwise an isolated wiped node could admit itself.
    if (reports.length + 1 < Math.floor(voters.length / 2) + 1) return false;
    this.#identity = { ...this.#identity, admitted: true, replaced };
    void this.#storage.writeFileAtomic(joinPath(this.#dir, "identity"), json(this.#identity));
    return true;
  }

  /** Whether a peer's report says another UUID holds our id (we are the wiped node). */
  get isStranger(): boolean {
    return [...this.#reports.values()].some((entry) =>
      entry !== undefined && entry.uuid !== this.#identity.uuid
    );
  }

  /** An operator's `cluster replace`: accept `uuid` as node `id` from now on. */
  replace(id: number, uuid: string): void {
    const known = this.#members[String(id)];
    this.#members[String(id)] = { uuid, version: (known?.version ?? 0) + 1 };
    this.#save();
  }

  /** Waits for pending registry writes (tests and shutdown). */
  flush(): Promise<void> {
    return this.#saving;
  }

  #save(): void {
    const bytes = json(this.#members);
    this.#saving = this.#saving.then(() =>
      this.#storage.writeFileAtomic(joinPath(this.#dir, "members"), bytes)
    );
  }
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(value)}\n`);
}
