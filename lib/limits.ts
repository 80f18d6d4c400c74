/**
 * @module Every bound the broker enforces, each with its unit in the name. Configurable limits
 * take these as defaults (lib/config); the relations between them are asserted at load time.
 */
import { assert } from "./assert.ts";

/** Longest command line accepted (header only, CRLF included). Longer: close the connection. */
export const COMMAND_LINE_BYTES_MAX = 4096;
/** Smallest configurable line limit: a put with a 200-byte topic and a transaction key fits. */
export const COMMAND_LINE_BYTES_MIN = 512;
/** Client connections open at once (maxConnections); beyond: accepted and closed at once. */
export const CONNECTIONS_MAX = 10_000;
/** Client connections from one IP address (maxConnectionsPerIp). */
export const CONNECTIONS_PER_IP_MAX = 1_000;
/** A connection silent this long with nothing pending is closed (MetaQ clients beat every 10 s). */
export const IDLE_TIMEOUT_MS = 10 * 60 * 1000;
/** A frame (or TLS handshake) left unfinished this long closes the connection (slowloris). */
export const FRAME_TIMEOUT_MS = 30_000;
/** Topics one broker holds (maxTopics); a put that would create one more is refused. */
export const TOPICS_MAX = 10_000;
/** Partitions one broker holds over all topics (maxPartitions). */
export const PARTITIONS_MAX = 100_000;
/** Failed `auth` attempts or unauthenticated commands before a connection is closed. */
export const AUTH_FAILURES_MAX = 3;
/** Default largest message data (attribute block + payload) a put may carry. */
export const MESSAGE_BYTES_MAX = 1024 * 1024;
/** Largest message data any configuration allows; recovery treats longer lengths as damage. */
export const MESSAGE_BYTES_LIMIT_MAX = 64 * 1024 * 1024;
/** Record header: length, checksum, id, flag. */
export const RECORD_HEADER_BYTES = 20;
/**
 * Largest data a stored record may carry: a message of MESSAGE_BYTES_LIMIT_MAX, with room for
 * the framing the broker's own logs (`__tx`, `__meta`) wrap around a message. Recovery treats
 * longer lengths as damage.
 */
export const RECORD_DATA_BYTES_MAX = MESSAGE_BYTES_LIMIT_MAX + 64 * 1024;
/** Largest record, header included. */
export const RECORD_BYTES_MAX = RECORD_HEADER_BYTES + RECORD_DATA_BYTES_MAX;
/** Largest `value` reply any configuration allows (maxTransferSize): one largest record. */
export const TRANSFER_BYTES_LIMIT_MAX = RECORD_HEADER_BYTES + MESSAGE_BYTES_LIMIT_MAX;
/** Largest Raft entry: the records of one proposal (a transaction's batch, or one record). */
export const RAFT_ENTRY_BYTES_MAX = RECORD_BYTES_MAX;
/** Largest Raft message body: one append's worth of entries plus one largest entry, and hints. */
export const RAFT_MESSAGE_BODY_BYTES_MAX = 2 * RAFT_ENTRY_BYTES_MAX + 64 * 1024;
/** Largest frame between nodes: an envelope around the largest Raft message. */
export const PEER_FRAME_BYTES_MAX = RAFT_MESSAGE_BODY_BYTES_MAX + 128 * 1024;
/** Largest request one node forwards to another: a command line and the largest message. */
export const FORWARDED_REQUEST_BYTES_MAX = COMMAND_LINE_BYTES_MAX + MESSAGE_BYTES_LIMIT_MAX;
/** Requests forwarded to other nodes and not yet answered; beyond it new ones get 503. */
export const FORWARDS_PENDING_MAX = 65_536;
/** A forwarded request not answered in this time is answered as indeterminate. */
export const FORWARD_TIMEOUT_MS = 10_000;
/** Questions one node asks others (a commit offset, a digest) and has no answer to yet. */
export const PEER_QUESTIONS_PENDING_MAX = 4096;
/** Outgoing bytes buffered for one peer; beyond it, messages to that peer are dropped. */
export const PEER_BUFFER_BYTES_MAX = 32 * 1024 * 1024;
/** Records proposed in one turn are one Raft entry, up to this many bytes (a larger one alone). */
export const RAFT_PROPOSAL_BATCH_BYTES_MAX = 1024 * 1024;
/**
 * Largest body of a batched put (`bput`, records in MetaQ's layout): one Raft proposal's worth,
 * so a batch is one entry. Larger messages travel as plain puts.
 */
export const BATCH_PUT_BYTES_MAX = RAFT_PROPOSAL_BATCH_BYTES_MAX;
/** Most records one batched put may carry. */
export const BATCH_PUT_RECORDS_MAX = 16_384;
/** How long a request waits for a partition (or the broker's own log) to have a leader. */
export const LEADER_WAIT_MS = 4000;
/** How long a request waits for a node just made a coordinator (groups, transactions) to be ready. */
export const COORDINATOR_WAIT_MS = 4000;
/**
 * How long a read at or past a node's readable end waits for records on their way to it (a
 * copy that has not heard of a commit yet), so a client reads its own acknowledged write.
 */
export const READ_WAIT_MS = 1000;
/**
 * Longest a long poll (`fetch`) waits for records: well inside the time a forwarded request
 * may take (FORWARD_TIMEOUT_MS), so a fetch through another node is answered, not timed out.
 */
export const FETCH_WAIT_MS_MAX = 5000;
/** Largest `get` a client asks for while growing its request to fit one record. */
export const FETCH_BYTES_MAX = RECORD_BYTES_MAX + 64 * 1024;
/** Largest reply a client's connection buffers (a `value` of FETCH_BYTES_MAX). */
export const CLIENT_REPLY_BYTES_MAX = FETCH_BYTES_MAX + 64 * 1024;
/** Consumer groups one coordinator keeps; a join that would make one more is refused. */
export const GROUPS_MAX = 10_000;
/** Members of one consumer group. */
export const MEMBERS_PER_GROUP_MAX = 1024;
/** Topics one group member subscribes to. */
export const TOPICS_PER_MEMBER_MAX = 64;
/** Longest member id. */
export const MEMBER_ID_BYTES_MAX = 200;
/** Default segment roll size (MetaQ's maxSegmentSize). */
export const SEGMENT_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** Default segment size of the cluster's `__meta-0` log, compacted behind snapshots. */
export const META_SEGMENT_BYTES_DEFAULT = 4 * 1024 * 1024;
/** Smallest segment roll size accepted (tests use small segments). */
export const SEGMENT_BYTES_MIN = 4096;
/** Default largest `value` reply (MetaQ's maxTransferSize). */
export const TRANSFER_BYTES_DEFAULT = 1024 * 1024;
/** Requests read from one connection and not yet answered; beyond it we stop reading. */
export const PENDING_REQUESTS_PER_CONNECTION_MAX = 4096;
/** Reply bytes buffered for one connection; beyond it we stop reading from it. */
export const OUTPUT_BYTES_PER_CONNECTION_MAX = 16 * 1024 * 1024;
/** Longest topic name, so that `<topic>-<partition>` fits a 255-byte file name. */
export const TOPIC_NAME_BYTES_MAX = 200;
/** Longest group name. */
export const GROUP_NAME_BYTES_MAX = 200;
/** Most partitions one topic may have on a broker. */
export const PARTITIONS_PER_TOPIC_MAX = 1024;
/** Group commit: sync as soon as this many bytes were written since the last sync. */
export const GROUP_COMMIT_BYTES_MAX = 4 * 1024 * 1024;
/** Records queued for one partition's writer and not yet written; beyond it puts get 503. */
export const APPEND_QUEUE_BYTES_MAX = 64 * 1024 * 1024;
/** Largest broker id that fits the 10 bits of MetaQ's message id. */
export const BROKER_ID_MAX = 1023;
/** Messages one transaction may hold before its commit; more puts are refused. */
export const TX_MESSAGES_MAX = 10_000;
/** Message data one transaction may hold (its commit appends it to the partitions at once). */
export const TX_BYTES_MAX = 32 * 1024 * 1024;
/** Message data all open and prepared transactions together may hold in memory. */
export const TX_HELD_BYTES_MAX = 256 * 1024 * 1024;
/** Open transactions (local and XA) a broker keeps at once; more BEGINs are refused. */
export const TX_OPEN_MAX = 100_000;
/** How often open transactions are checked against their timeouts (MetaQ's wheel tick). */
export const TX_TIMEOUT_TICK_MS = 500;
/**
 * Keys of recent commits the transaction journal remembers (about 100 bytes each), so a COMMIT
 * sent again to the next coordinator within seconds finds its outcome.
 */
export const TX_COMMITTED_KEYS_MAX = 4096;
/** Largest HTTP request body (a JSON batch of messages); larger: 413 before it is read whole. */
export const HTTP_BODY_BYTES_MAX = 16 * 1024 * 1024;
/** Messages one HTTP produce request may carry. */
export const HTTP_BATCH_MESSAGES_MAX = 1000;
/** Messages one HTTP fetch returns at most (`max`). */
export const HTTP_FETCH_MESSAGES_MAX = 1000;
/** Server-Sent Event streams open at once (topic streams and dashboard feeds); beyond: 503. */
export const SSE_STREAMS_MAX = 256;
/**
 * Largest batch an uplink's `uput` carries (a hub accepts this, or one largest message with its
 * origin when maxMessageSize is larger). A batch is one append and, on a cluster, one Raft entry
 * sent to every follower: four in flight stay well inside PEER_BUFFER_BYTES_MAX.
 */
export const UPLINK_BATCH_BYTES_MAX = 4 * 1024 * 1024;
/** Room a forwarded message needs beyond its data: its header and its origin attribute. */
export const UPLINK_RECORD_OVERHEAD_BYTES = 1024;
/** Recent warnings and errors the dashboard shows; older ones are dropped. */
export const LOG_RING_ENTRIES_MAX = 100;

assert(MESSAGE_BYTES_MAX + RECORD_HEADER_BYTES <= TRANSFER_BYTES_DEFAULT * 2);
assert(MESSAGE_BYTES_MAX * 2 <= APPEND_QUEUE_BYTES_MAX);
assert(SEGMENT_BYTES_MIN >= RECORD_HEADER_BYTES);
assert(TX_BYTES_MAX * 2 <= APPEND_QUEUE_BYTES_MAX);
assert(TX_BYTES_MAX <= TX_HELD_BYTES_MAX);
assert(MESSAGE_BYTES_MAX * 2 <= HTTP_BODY_BYTES_MAX);
// A message of any configurable size can be stored, replicated and forwarded whole.
assert(MESSAGE_BYTES_LIMIT_MAX + 1024 <= RECORD_DATA_BYTES_MAX);
assert(RECORD_BYTES_MAX <= RAFT_ENTRY_BYTES_MAX);
assert(BATCH_PUT_BYTES_MAX <= RAFT_ENTRY_BYTES_MAX);
assert(FETCH_WAIT_MS_MAX + READ_WAIT_MS * 2 <= FORWARD_TIMEOUT_MS);
assert(COMMAND_LINE_BYTES_MAX + BATCH_PUT_BYTES_MAX <= FORWARDED_REQUEST_BYTES_MAX);
assert(BATCH_PUT_RECORDS_MAX * RECORD_HEADER_BYTES <= BATCH_PUT_BYTES_MAX);
// A transaction's batch for one partition is one entry: its messages and their headers.
assert(TX_BYTES_MAX + TX_MESSAGES_MAX * RECORD_HEADER_BYTES <= RAFT_ENTRY_BYTES_MAX);
// A Raft frame (40-byte header) in an envelope (a kind byte, a name of up to 64 KiB) fits.
assert(40 + RAFT_MESSAGE_BODY_BYTES_MAX + 3 + 0xffff <= PEER_FRAME_BYTES_MAX);
// A forwarded request in its envelope (9 bytes), and a reply frame with the largest record.
assert(9 + FORWARDED_REQUEST_BYTES_MAX <= PEER_FRAME_BYTES_MAX);
assert(5 + 64 + RECORD_BYTES_MAX <= PEER_FRAME_BYTES_MAX);
// The largest message any configuration allows can be served whole, and fetched by a client.
assert(TRANSFER_BYTES_LIMIT_MAX <= FETCH_BYTES_MAX);
assert(RECORD_BYTES_MAX <= FETCH_BYTES_MAX);
assert(FETCH_BYTES_MAX + 64 <= CLIENT_REPLY_BYTES_MAX);
// A new leader gets a full election's time before a waiting request gives up.
assert(COORDINATOR_WAIT_MS >= READ_WAIT_MS);
// Four uplink batches in flight to one hub partition's followers fit a peer's buffer.
assert(4 * UPLINK_BATCH_BYTES_MAX <= PEER_BUFFER_BYTES_MAX / 2);
// A hub takes the largest batch, or the largest message with its origin, as one forwarded request.
assert(MESSAGE_BYTES_LIMIT_MAX + UPLINK_RECORD_OVERHEAD_BYTES <= FORWARDED_REQUEST_BYTES_MAX);

/** At shutdown, how long the client port waits for requests in flight to be answered. */
export const SHUTDOWN_DRAIN_MS = 5000;
