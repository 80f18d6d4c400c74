/**
 * @module The reliability plan's port plan (section 1.1) plus a per-run offset, and the
 * reservation that keeps two runs on one machine (other engineers run tests in parallel) from
 * choosing the same offset. Node ids are 1..9 so that `7300 + 10 i + j` stays unambiguous.
 *
 * | port                     | what                                        |
 * | ------------------------ | ------------------------------------------- |
 * | 7100 + i + offset        | client port of node i                       |
 * | 7200 + i + offset        | peer listen port of node i                  |
 * | 7300 + 10 i + j + offset | link proxy for bytes from node i to node j  |
 * | 7400 + i + offset        | client-side proxy for node i                |
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import type { Random } from "./random.ts";

export const NODE_ID_MAX = 9;
/** Offsets are multiples of this, so two plans never share a port. */
export const OFFSET_STEP = 500;
/** 50 slots: the highest port (7459 + 24500) stays below Linux's ephemeral range (32768+). */
export const OFFSET_SLOTS = 50;
const LOCK_DIR = path.join(os.tmpdir(), "metaq-chaos-ports");
const RESERVE_ATTEMPTS_MAX = 30;

export interface PortPlan {
  readonly offset: number;
  clientPort(node: number): number;
  peerPort(node: number): number;
  linkPort(from: number, to: number): number;
  clientProxyPort(node: number): number;
  /** Every port the plan uses for `nodeCount` nodes. */
  ports(nodeCount: number): number[];
}

export function portPlan(offset: number): PortPlan {
  const check = (node: number) => {
    if (!Number.isInteger(node) || node < 1 || node > NODE_ID_MAX) {
      throw new RangeError(`Cannot plan ports for node ${node}: ids are 1..${NODE_ID_MAX}`);
    }
    return node;
  };
  const plan: PortPlan = {
    offset,
    clientPort: (node) => 7100 + check(node) + offset,
    peerPort: (node) => 7200 + check(node) + offset,
    linkPort: (from, to) => {
      if (from === to) throw new RangeError(`Cannot plan a link from node ${from} to itself`);
      return 7300 + 10 * check(from) + check(to) + offset;
    },
    clientProxyPort: (node) => 7400 + check(node) + offset,
    ports(nodeCount) {
      const out: number[] = [];
      for (let i = 1; i <= nodeCount; i++) {
        out.push(plan.clientPort(i), plan.peerPort(i), plan.clientProxyPort(i));
        for (let j = 1; j <= nodeCount; j++) if (i !== j) out.push(plan.linkPort(i, j));
      }
      return out;
    },
  };
  return plan;
}

export interface PortReservation {
  readonly plan: PortPlan;
  release(): void;
}

/**
 * Picks an offset whose lock file this process can create and whose ports are all free now.
 * The lock is advisory (other programs may still take a port later); a lock left by a dead
 * process is taken over.
 */
export async function reservePorts(nodeCount: number, random: Random): Promise<PortReservation> {
  fs.mkdirSync(LOCK_DIR, { recursive: true });
  const slots = random.shuffle(Array.from({ length: OFFSET_SLOTS }, (_, slot) => slot));
  for (const slot of slots.slice(0, RESERVE_ATTEMPTS_MAX)) {
    const plan = portPlan(slot * OFFSET_STEP);
    const lock = path.join(LOCK_DIR, `${plan.offset}.lock`);
    if (!takeLock(lock)) continue;
    if (await allFree(plan.ports(nodeCount))) {
      return { plan, release: () => fs.rmSync(lock, { force: true }) };
    }
    fs.rmSync(lock, { force: true });
  }
  throw new Error(
    `Cannot reserve ports for ${nodeCount} nodes: ${RESERVE_ATTEMPTS_MAX} offsets busy`,
  );
}

function takeLock(lock: string): boolean {
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
    return true;
  } catch {
    let owner = 0;
    try {
      owner = Number(fs.readFileSync(lock, "utf8"));
    } catch {
      return false; // removed or rewritten under us: let the next slot be tried
    }
    // /proc/<pid> tells whether the owner lives without sending it any signal.
    if (Number.isInteger(owner) && owner > 0 && fs.existsSync(`/proc/${owner}`)) return false;
    fs.rmSync(lock, { force: true });
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      return true;
    } catch {
      return false;
    }
  }
}

async function allFree(ports: readonly number[]): Promise<boolean> {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}
