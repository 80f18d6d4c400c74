/**
 * @module Jepsen's queue anomalies, by the names its published analyses use (Redpanda 21.10.1,
 * NATS 2.12.1, Bufstream 0.1.0) and its `jepsen.tests.kafka` checker, each defined for metaq's
 * histories. The checker (checker.ts) reports every client-visible discrepancy under one of these
 * names as well as under its invariant, so a run's result reads line by line against those
 * reports. Definitions only: the checks are in checker.ts.
 *
 * Terms:
 *
 * - A **send** is one value a client put: a plain `put` (a `produce` operation), or one message of
 *   a local or XA transaction (a `txn` operation). Every value is unique in a run
 *   (`"<client>-<seq>"`), so a value names its send.
 * - A send is **committed** when its `put` was answered 200, or its transaction's COMMIT was
 *   answered 200 or "journalled and will be completed"; **failed** when its `put` was answered 503
 *   or never left the client, or its transaction certainly did not commit (rolled back, COMMIT
 *   refused without effect, or COMMIT never sent); **indeterminate** otherwise (no reply in time,
 *   a connection lost after sending, any other status). Jepsen's `:ok`, `:fail` and `:info`.
 * - The **final log** of a partition is its drain through a node after every fault healed and the
 *   replicas converged: every record from the log start to the end. Its record order is the
 *   partition's **version order**, and a record's **index** its position in it (0, 1, 2...). metaq
 *   offsets are byte positions, so the index is the dense counterpart of Jepsen's offsets.
 * - A **read** is a record a consumer fetched, a transaction fetched before its COMMIT, the final
 *   drain returned, or a replica's files hold.
 * - A **session** is one consumer's reading of one partition between reassignments: a group
 *   member's generation, a broadcast or plain reader's incarnation (Jepsen: a process between two
 *   `assign`/`subscribe` operations).
 */

export interface AnomalyDefinition {
  /** What the checker reports under the name, precisely. */
  readonly definition: string;
  /** How Jepsen's checker defines it, and where metaq's definition differs. */
  readonly jepsen: string;
  /** The invariants (checker.ts) it is reported under. */
  readonly invariants: readonly string[];
}

export const ANOMALIES = {
  "lost-write": {
    definition: "A committed send is missing from the final log of its partition; or an " +
      "indeterminate send whose value some read returned (so it was visible) is missing from it; " +
      "for a transaction, when none of its values is there (some missing is torn-transaction). " +
      "Losses are split per producer into prefix, middle and postfix (before the first, between, " +
      "after the last of its values that were read), as in Jepsen's NATS analysis.",
    jepsen: "kafka checker: a value acknowledged (or read) at an index at or below the highest " +
      "index any poll read, which no poll returned. Jepsen cannot count sends beyond the last " +
      "read; metaq's harness drains every partition to its end after the heal, so every " +
      "committed send must be in that final read.",
    invariants: ["I1", "I7"],
  },
  "duplicate": {
    definition: "A value sits at more than one offset of the final log, more times than its " +
      "producer sent it (once: only the W1r variant resends).",
    jepsen: "kafka checker: a value at more than one offset of the version order, which Jepsen " +
      "builds from acknowledged sends and polls together. An acknowledgement whose offset " +
      "disagrees with the log is inconsistent-offsets here, not a duplicate.",
    invariants: ["I5"],
  },
  "inconsistent-offsets": {
    definition: "Two different values were observed at one (partition, offset) across fetches, " +
      "transactions' reads, the final drain and replica dumps; or a value was observed, by an " +
      "acknowledgement or a fetch, at another offset than where the final log has it.",
    jepsen: "kafka checker: more than one value at one offset of a partition across all sends " +
      "and polls (Redpanda 21.10.1's headline finding).",
    invariants: ["I3", "I4", "I7"],
  },
  "nonmonotonic-send": {
    definition: "One sequential producer's committed sends to one partition are not in the " +
      "order it sent them, in the final log or in their acknowledged offsets: a later send at or " +
      "before an earlier one. Covers the puts inside one transaction and consecutive committed " +
      "transactions of one producer.",
    jepsen: "kafka checker: a process's successive sends to a key go backwards (or stay) in the " +
      "version order, counting indeterminate sends too; within one transaction it is " +
      "int-nonmonotonic-send. metaq promises no order for a send of unknown outcome (it may " +
      "still be on its way when the next is sent), so only committed sends count.",
    invariants: ["I6"],
  },
  "poll-skip": {
    definition: "Within one session, a consumer received a record and next one further on in " +
      "the version order than the record right after it (records the final log holds were " +
      "skipped); or a 301 moved it forward over records the final log still holds (over " +
      "records retention deleted is fine); or it asked from beyond where its last fetch ended.",
    jepsen: "kafka checker: two successive polls of one process, without a reassignment between " +
      "them, whose values are more than one index apart (int-poll-skip within one poll).",
    invariants: ["I8"],
  },
  "nonmonotonic-poll": {
    definition: "Within one session, a consumer received a record at or before the position " +
      "of a record it had already received; or a 301 sent it back below where it was reading; " +
      "or it asked from before where its last fetch ended.",
    jepsen: "kafka checker: a process's poll starts at or before where its previous poll left " +
      "off (int-nonmonotonic-poll within one poll).",
    invariants: ["I8"],
  },
  "unseen": {
    definition: "A committed send that is in the final log was never delivered, by the end of " +
      "the run, to a consumer that had to read everything: a consumer group (any member), a " +
      "broadcast consumer, the plain readers together. The harness lets them run until they " +
      "reach the final log's end (bounded) before judging.",
    jepsen: "kafka checker: acknowledged messages that no poll returned by the end of the " +
      "history, a count per key over time; it includes lost writes, which are reported only " +
      "as lost-write here.",
    invariants: ["I1"],
  },
  "aborted-read": {
    definition: "A read (a fetch, a transaction's read or the final drain) returned a value " +
      "whose send failed: a put answered 503 or never sent, or a transaction that was rolled " +
      "back, whose COMMIT was refused without effect, or whose COMMIT was never sent.",
    jepsen: "Adya's G1a, which the kafka checker reports as :G1a and the Redpanda analysis " +
      "calls aborted read: a read observes a value written by an operation that failed.",
    invariants: ["I7"],
  },
  "torn-transaction": {
    definition: "A transaction that did not fail is not all or nothing in the final log: some " +
      "of its values are there and others are not (a committed transaction seen in part), or " +
      "its values in one partition do not form one run of records (metaq appends a " +
      "partition's share of a commit in one piece).",
    jepsen: "Bufstream 0.1.0 analysis: a transaction whose effects were partly committed and " +
      "partly lost. The kafka checker's nearest check is its lost-write over transactions.",
    invariants: ["I14"],
  },
  "G1c": {
    definition: "Circular information flow between two transactions: T2 read a value of T1 " +
      "before its COMMIT (write-read, T1 → T2), yet a record of T2 precedes a record of T1 in " +
      "a partition's final log (write-write, T2 → T1), in the partition T2 read from, or in " +
      "any partition when T1's commit was acknowledged before T2 began. A plain put is a " +
      "transaction of one write.",
    jepsen: "Adya's G1c, a cycle of write-write and write-read dependencies; the kafka checker " +
      "draws ww edges from the version order and wr edges from polls, and Elle reports every " +
      "cycle. metaq makes a commit visible one partition at a time while it is in flight " +
      "(per-partition atomicity, as Kafka), so longer cycles through an in-flight commit, and " +
      "cycles of ww edges alone (G0), are allowed and not reported.",
    invariants: ["I15"],
  },
} as const satisfies Record<string, AnomalyDefinition>;

export type AnomalyName = keyof typeof ANOMALIES;
export const ANOMALY_NAMES = Object.keys(ANOMALIES) as AnomalyName[];
