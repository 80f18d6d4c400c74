/**
 * @module StalledLinks: when to drop an outgoing peer link that looks up but carries nothing.
 *
 * A network fault that drops packets (a pulled cable, a firewall rule) does not close a TCP
 * connection: the sender's kernel keeps the unacknowledged bytes and retransmits them with a
 * backoff that doubles each time (up to two minutes on Linux). When the fault heals, such a link
 * stays silent until its next retransmission, seconds or minutes later, and a link that was
 * stalled by several faults in a row can be the only thing keeping a group from electing (the
 * CI campaign's T09 over network namespaces: node 2's link to node 3 stayed stalled for 53 s,
 * so with node 1 isolated no group could reach a quorum). A new connection gets through at once.
 *
 * Two signs, each acted on at most once per link per interval:
 * - the peer says it has heard nothing from this node for an election timeout while this
 *   node's link to it has been up that long (the `unheard` list of its info): this link is
 *   stalled, whatever the other direction does;
 * - this node has heard nothing from the peer for a longer while (both directions may be
 *   stalled, so no info gets through either): try a new link, at a slower pace, since a peer
 *   that is down or paused is silent too and a new dial costs it nothing useful.
 *
 * Pure: the caller passes the time and whether the link is up, and does the dialing.
 */
import type { NodeId } from "./messages.ts";

export interface StalledLinksTiming {
  /** Silence after which a peer counts as unheard: the election timeout's lower bound. */
  readonly silenceMs: number;
  /** Least time between two redials of a link to a peer this node does not hear. */
  readonly silentRedialMs: number;
}

/** The least time between two redials of a silent peer: new dials of a dead peer are useless. */
export function silentRedialMs(electionMaxMs: number): number {
  return Math.max(5_000, 2 * electionMaxMs);
}

export class StalledLinks {
  readonly #timing: StalledLinksTiming;
  /** When each outgoing link last came up or was dropped here, whichever is later. */
  readonly #since = new Map<NodeId, number>();

  constructor(timing: StalledLinksTiming) {
    this.#timing = timing;
  }

  /** The outgoing link to `peer` came up at `nowMs`. */
  connected(peer: NodeId, nowMs: number): void {
    this.#since.set(peer, nowMs);
  }

  /**
   * `peer` says it has heard nothing from this node: whether to drop the link now. Not before
   * the link has been up for a silence's length: the peer's word may predate it.
   */
  peerHearsNothing(peer: NodeId, nowMs: number, linkUp: boolean): boolean {
    return this.#due(peer, nowMs, linkUp, this.#timing.silenceMs);
  }

  /** This node has heard nothing from `peer` for a silence's length: whether to drop the link. */
  peerSilent(peer: NodeId, nowMs: number, linkUp: boolean): boolean {
    return this.#due(peer, nowMs, linkUp, this.#timing.silentRedialMs);
  }

  #due(peer: NodeId, nowMs: number, linkUp: boolean, waitMs: number): boolean {
    // A link that is down is being dialed already.
    if (!linkUp) return false;
    const since = this.#since.get(peer);
    if (since === undefined) {
      // Up before this node started watching it: count from now.
      this.#since.set(peer, nowMs);
      return false;
    }
    if (nowMs - since < waitMs) return false;
    this.#since.set(peer, nowMs);
    return true;
  }
}
