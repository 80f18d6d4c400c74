/**
 * @module Power-loss emulation (reliability plan 1.3): after SIGKILL (which keeps the page cache),
 * make a node's data directory look like the machine lost power, using the durability journal the
 * broker writes under `METAQ_TEST_SYNC_JOURNAL`, one JSON line per event, before acknowledging
 * anything the event covers:
 *
 * ```text
 * {"op":"sync","path":"/abs/file","length":4096}       after every successful fdatasync of a file
 * {"op":"create","path":"/abs/file"}                   file or directory created
 * {"op":"rename","path":"/abs/from","to":"/abs/to"}
 * {"op":"remove","path":"/abs/file"}
 * {"op":"syncdir","path":"/abs/dir"}                   after every directory fsync
 * ```
 *
 * The planner (pure) models files as inodes moving between paths. A directory operation is
 * durable when every directory it touched was fsynced after it. The data directory as it was at
 * the last start (the baseline, taken when nothing was unsynced) is durable by definition. Then:
 *
 * | what                                           | emulation                                   |
 * | ---------------------------------------------- | ------------------------------------------- |
 * | file longer than its last synced length        | truncated to it (never synced: empty)       |
 * | ... and had unsynced bytes, p = 1/2            | torn tail: random bytes, zeros, or a prefix |
 * |                                                | of the real unsynced bytes, up to 4 KiB     |
 * | create not followed by a sync of its directory | the file or directory vanishes              |
 * | rename not followed by syncs of its directories| reverted                                    |
 * | remove, or rename over an existing file, not   | kept, and noted: the old bytes are gone, so |
 * | synced                                         | the worst case cannot be rebuilt            |
 * | file never journaled and not in the baseline   | left alone (lock files, ports files)        |
 *
 * Not emulated: lost truncations (a shrink that was never synced), reordering inside one file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseJsonLines } from "./history.ts";
import { Random } from "./random.ts";

export type JournalOp =
  | { readonly op: "sync"; readonly path: string; readonly length: number }
  | { readonly op: "create"; readonly path: string }
  | { readonly op: "rename"; readonly path: string; readonly to: string }
  | { readonly op: "remove"; readonly path: string }
  | { readonly op: "syncdir"; readonly path: string };

export interface FileFacts {
  readonly size: number;
  readonly directory: boolean;
}

/** Absolute path → facts, for every file and directory under a root (the root included). */
export type FileSnapshot = ReadonlyMap<string, FileFacts>;

export type TailFill = "random" | "zeros" | "stale";

export type PowerLossAction =
  | { readonly kind: "move"; readonly from: string; readonly to: string }
  | { readonly kind: "remove"; readonly path: string }
  | { readonly kind: "truncate"; readonly path: string; readonly length: number }
  | {
    readonly kind: "append";
    readonly path: string;
    readonly fill: "random" | "zeros";
    readonly length: number;
    readonly seed: number;
  };

export interface PowerLossPlan {
  readonly actions: readonly PowerLossAction[];
  /** What could not be undone, and contract problems in the journal. */
  readonly notes: readonly string[];
}

export const TORN_TAIL_BYTES_MAX = 4096;

export function parseJournal(text: string): { ops: JournalOp[]; problems: string[] } {
  const ops: JournalOp[] = [];
  const problems: string[] = [];
  for (const raw of parseJsonLines<Record<string, unknown>>(text)) {
    const ok = typeof raw.path === "string" && path.isAbsolute(raw.path) &&
      (raw.op === "sync"
        ? Number.isSafeInteger(raw.length) && (raw.length as number) >= 0
        : raw.op === "rename"
        ? typeof raw.to === "string" && path.isAbsolute(raw.to)
        : raw.op === "create" || raw.op === "remove" || raw.op === "syncdir");
    if (ok) ops.push(raw as unknown as JournalOp);
    else problems.push(`bad journal line ${JSON.stringify(raw).slice(0, 200)}`);
  }
  return { ops, problems };
}

interface Inode {
  readonly id: number;
  readonly directory: boolean;
  synced: number;
}

interface DirOp {
  readonly op: JournalOp & { op: "create" | "rename" | "remove" };
  readonly inode: Inode | undefined;
  readonly dirs: Set<string>;
}

export interface PlanInput {
  readonly journal: readonly JournalOp[];
  /** The directory at the last start (or last power cut): durable by definition. */
  readonly baseline: FileSnapshot;
  /** The directory now, after SIGKILL. */
  readonly current: FileSnapshot;
  readonly random: Random;
  /** Add torn tails (default true). */
  readonly tornTails?: boolean;
}

/** Decides what a power cut does to the directory; pure. */
export function planPowerLoss(input: PlanInput): PowerLossPlan {
  const notes: string[] = [];
  let nextId = 0;
  const inode = (directory: boolean, synced: number): Inode => ({
    id: nextId++,
    directory,
    synced,
  });
  const live = new Map<string, Inode>();
  for (const [file, facts] of input.baseline) live.set(file, inode(facts.directory, facts.size));
  const durable = new Map(live);
  const dirOps = replay(input, live, inode, notes);
  for (const entry of dirOps) if (entry.dirs.size === 0) applyDurable(durable, entry);
  const located = new Map<number, string>();
  for (const [file, node] of live) if (input.current.has(file)) located.set(node.id, file);
  const layout = restoreLayout(durable, live, located, input, notes);
  const moves: [string, string][] = [];
  for (const [file, node] of layout) {
    const at = located.get(node.id);
    if (at !== undefined && at !== file) moves.push([at, file]);
  }
  const wanted = new Set([...layout.values()].map((node) => node.id));
  const removals = [...live]
    .filter(([file, node]) => input.current.has(file) && !wanted.has(node.id))
    .map(([file]) => file);
  return {
    actions: [
      ...moveActions(moves),
      ...dropNested(removals).map((file): PowerLossAction => ({ kind: "remove", path: file })),
      ...lengthActions(layout, located, input),
    ],
    notes,
  };
}

/**
 * The layout after the power cut: each durable path gets its durable inode back. When that
 * inode's bytes are gone (removed, or renamed over, without a directory sync) the file now at
 * that path stays: the operation having reached the disk is a legal outcome too, and the worst
 * case (old bytes back) cannot be rebuilt. Entries inside a directory that vanishes go with it.
 */
function restoreLayout(
  durable: ReadonlyMap<string, Inode>,
  live: ReadonlyMap<string, Inode>,
  located: ReadonlyMap<number, string>,
  input: PlanInput,
  notes: string[],
): Map<string, Inode> {
  const layout = new Map<string, Inode>();
  const kept = new Set<number>();
  for (const [file, node] of durable) {
    if (located.has(node.id)) continue;
    const newer = live.get(file);
    if (newer && input.current.has(file)) {
      layout.set(file, newer);
      kept.add(newer.id);
      notes.push(`kept ${file}: the rename or remove over it was not synced, old bytes unknown`);
    } else if (!node.directory) {
      notes.push(`cannot restore ${file}: removed without a directory sync, bytes gone`);
    }
  }
  for (const [file, node] of durable) {
    if (located.has(node.id) && !kept.has(node.id) && !layout.has(file)) layout.set(file, node);
  }
  const shallowFirst = [...layout.keys()].sort((a, b) => a.length - b.length);
  for (const file of shallowFirst) {
    for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      if (!live.has(dir)) continue; // outside the tracked tree
      if (!layout.has(dir)) layout.delete(file);
      break;
    }
  }
  return layout;
}

/** Replays the journal over `live` (path → inode); returns the directory operations. */
function replay(
  input: PlanInput,
  live: Map<string, Inode>,
  inode: (directory: boolean, synced: number) => Inode,
  notes: string[],
): DirOp[] {
  const dirOps: DirOp[] = [];
  for (const op of input.journal) {
    if (op.op === "syncdir") {
      for (const entry of dirOps) entry.dirs.delete(op.path);
      continue;
    }
    if (op.op === "sync") {
      let node = live.get(op.path);
      if (!node) {
        notes.push(`contract: ${op.path} was synced but its creation was never journaled`);
        node = inode(false, 0);
        live.set(op.path, node);
        // Lenient: taken as durably created, so a journaling gap is reported, not punished.
        dirOps.push({ op: { op: "create", path: op.path }, inode: node, dirs: new Set() });
      }
      node.synced = op.length;
      continue;
    }
    if (op.op === "create") {
      const node = inode(input.current.get(op.path)?.directory ?? false, 0);
      live.set(op.path, node);
      dirOps.push({ op, inode: node, dirs: new Set([path.dirname(op.path)]) });
    } else if (op.op === "rename") {
      const node = live.get(op.path);
      live.delete(op.path);
      if (node) live.set(op.to, node);
      else notes.push(`contract: rename of ${op.path}, which the journal never saw`);
      dirOps.push({ op, inode: node, dirs: new Set([path.dirname(op.path), path.dirname(op.to)]) });
    } else {
      const node = live.get(op.path);
      for (const file of [...live.keys()]) {
        if (file === op.path || file.startsWith(`${op.path}/`)) live.delete(file);
      }
      dirOps.push({ op, inode: node, dirs: new Set([path.dirname(op.path)]) });
    }
  }
  return dirOps;
}

function applyDurable(durable: Map<string, Inode>, entry: DirOp): void {
  const { op, inode } = entry;
  if (op.op === "create" && inode) durable.set(op.path, inode);
  if (op.op === "rename" && inode) {
    if (durable.get(op.path) === inode) durable.delete(op.path);
    durable.set(op.to, inode);
  }
  if (op.op === "remove") {
    for (const file of [...durable.keys()]) {
      if (file === op.path || file.startsWith(`${op.path}/`)) durable.delete(file);
    }
  }
}

/** Moves through temporary names first, so swapped or chained renames cannot clobber. */
function moveActions(moves: readonly [string, string][]): PowerLossAction[] {
  const temp = (index: number, from: string) => `${from}.powerloss-${index}`;
  return [
    ...moves.map(([from], index): PowerLossAction => ({
      kind: "move",
      from,
      to: temp(index, from),
    })),
    ...moves.map(([from, to], index): PowerLossAction => ({
      kind: "move",
      from: temp(index, from),
      to,
    })),
  ];
}

/** Drops paths inside a directory that is removed anyway. */
function dropNested(paths: readonly string[]): string[] {
  const sorted = [...paths].sort();
  return sorted.filter((file) => !sorted.some((other) => file.startsWith(`${other}/`)));
}

/** Truncations to the synced length, and torn tails on files that had unsynced bytes. */
function lengthActions(
  layout: ReadonlyMap<string, Inode>,
  located: ReadonlyMap<number, string>,
  input: PlanInput,
): PowerLossAction[] {
  const out: PowerLossAction[] = [];
  for (const [file, node] of [...layout].sort(([a], [b]) => a.localeCompare(b))) {
    const size = input.current.get(located.get(node.id) ?? file)?.size;
    if (node.directory || size === undefined || size <= node.synced) continue;
    const unsynced = size - node.synced;
    const torn = (input.tornTails ?? true) && input.random.chance(0.5);
    if (!torn) {
      out.push({ kind: "truncate", path: file, length: node.synced });
      continue;
    }
    const length = input.random.int(1, Math.min(TORN_TAIL_BYTES_MAX, unsynced));
    const fill = input.random.pick<TailFill>(["random", "zeros", "stale"]);
    if (fill === "stale") {
      out.push({ kind: "truncate", path: file, length: node.synced + length });
    } else {
      out.push({ kind: "truncate", path: file, length: node.synced });
      out.push({ kind: "append", path: file, fill, length, seed: input.random.uint32() });
    }
  }
  return out;
}

/** Carries out a plan on the real file system. */
export function applyPowerLoss(plan: PowerLossPlan): void {
  for (const action of plan.actions) {
    switch (action.kind) {
      case "move":
        fs.mkdirSync(path.dirname(action.to), { recursive: true });
        fs.renameSync(action.from, action.to);
        break;
      case "remove":
        fs.rmSync(action.path, { recursive: true, force: true });
        break;
      case "truncate":
        fs.truncateSync(action.path, action.length);
        break;
      case "append": {
        const bytes = action.fill === "zeros"
          ? new Uint8Array(action.length)
          : new Random(action.seed).bytes(action.length);
        fs.appendFileSync(action.path, bytes);
        break;
      }
    }
  }
}

/** Every file and directory under `root` (root included), with sizes. */
export function snapshotFiles(root: string): Map<string, FileFacts> {
  const out = new Map<string, FileFacts>();
  const visit = (dir: string) => {
    out.set(dir, { size: 0, directory: true });
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) visit(full);
      else if (entry.isFile()) out.set(full, { size: fs.statSync(full).size, directory: false });
    }
  };
  if (fs.existsSync(root)) visit(root);
  return out;
}

/** One line per action, for the run log. */
export function describePlan(plan: PowerLossPlan): string[] {
  return [
    ...plan.actions.map((action) => {
      switch (action.kind) {
        case "move":
          return `move ${action.from} -> ${action.to}`;
        case "remove":
          return `remove ${action.path}`;
        case "truncate":
          return `truncate ${action.path} to ${action.length}`;
        case "append":
          return `append ${action.length} ${action.fill} bytes to ${action.path}`;
      }
    }),
    ...plan.notes.map((note) => `note: ${note}`),
  ];
}
