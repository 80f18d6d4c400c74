/**
 * @module PeerNetwork: what a cluster node needs from its links to the other nodes. In
 * production that is PeerTransport (framed TCP, optionally TLS, with a secret handshake); the
 * simulator gives the node an in-memory network that delays, drops, duplicates, reorders and
 * partitions frames in virtual time. Frames are opaque bytes here: the node encodes envelopes.
 */
import type { PeerAddress } from "./cluster_config.ts";
import type { NodeId } from "./messages.ts";

/** What the network tells the node it belongs to. */
export interface PeerHandlers {
  /**
   * A whole frame's payload arrived from `from`, exactly as it was sent: a network checks each
   * frame's integrity itself (PeerTransport: a CRC-32 over the payload), so the node does not
   * check the Raft message's own body checksum again.
   */
  readonly onFrame: (from: NodeId, payload: Uint8Array) => void;
  /** The outgoing link to `peer` came up (for example to resend state). */
  readonly onConnected?: (peer: NodeId) => void;
  /**
   * Bytes of a frame from `peer` arrived and the frame is not whole yet (a large entry in
   * transit): the peer is alive even though no message has arrived for a while.
   */
  readonly onFrameProgress?: (peer: NodeId) => void;
}

export interface PeerNetwork {
  /** Starts listening and dialing; resolves with the bound peer port. */
  listen(): Promise<number>;
  /** Whether the outgoing link to `peer` is up. */
  isConnected(peer: NodeId): boolean;
  /** Whether a frame for `peer` would be taken now (callers ask before encoding a large one). */
  canSend(peer: NodeId, mustDeliver?: boolean): boolean;
  /**
   * Queues a frame whose payload follows its first PEER_FRAME_HEADER_BYTES bytes (the header
   * is the network's to fill in), or a list of parts whose payload starts there and goes on
   * through the others (unchanged until sent). False when it was dropped: the link is down or
   * backed up, and only `mustDeliver` frames are kept past the usual backlog.
   */
  sendFramed(
    peer: NodeId,
    framed: Uint8Array | readonly Uint8Array[],
    mustDeliver?: boolean,
  ): boolean;
  /**
   * The nodes to link to from now on (the cluster's members changed): new ones are reached,
   * links to nodes no longer listed are closed. Any node may still send here.
   */
  setPeers(peers: readonly PeerAddress[]): void;
  /**
   * Drops the outgoing link to `peer`, discarding what it holds, and dials it again: the link
   * looks up but carries nothing (a connection left in retransmission backoff by a network
   * fault that has healed). Networks without such links need not offer it.
   */
  redial?(peer: NodeId): void;
  close(): Promise<void>;
}

/** Builds the node's network once the node knows where to hand what arrives. */
export type PeerNetworkFactory = (handlers: PeerHandlers) => PeerNetwork;
