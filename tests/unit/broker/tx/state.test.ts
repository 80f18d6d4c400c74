import { describe, expect, test } from "bun:test";
import { parseTxKey } from "../../../../lib/protocol/parser.ts";
import { commandFailureText } from "../../../../lib/broker/tx/failure.ts";
import { XA } from "../../../../lib/protocol/xa.ts";
import {
  deadlineFor,
  decideCommit,
  decidePrepare,
  isExpired,
  type OpenTransaction,
  type OpenTxKey,
  refusePut,
  type TxPhase,
} from "../../../../lib/broker/tx/state.ts";

const LOCAL = parseTxKey("TX:s:1") as OpenTxKey;
const XID = parseTxKey("XID:1:0a:0b:q") as OpenTxKey;

function tx(key: OpenTxKey, phase: TxPhase, messages = 0): OpenTransaction {
  return {
    number: 1,
    key,
    connection: key.kind === "local" ? "0:1" : undefined,
    phase,
    messages: Array.from({ length: messages }, (_, index) => ({
      topic: "t",
      partition: 0,
      id: BigInt(index + 1),
      flag: 0,
      data: new Uint8Array(3),
    })),
    bytes: messages * 3,
    deadlineMs: undefined,
  };
}

const failureText = (
  decision: { kind: string; failure?: Parameters<typeof commandFailureText>[0] },
) => decision.failure ? commandFailureText(decision.failure) : decision.kind;

describe("MetaQ's transaction state machine", () => {
  test("PREPARE follows XATransaction.prepare and LocalTransaction.prepare", () => {
    expect(failureText(decidePrepare(tx(LOCAL, "inUse", 1)))).toBe(
      "XAException:code=-3,msg=Prepare not implemented on Local Transactions.",
    );
    expect(decidePrepare(tx(XID, "start"))).toEqual({ kind: "readOnly" });
    expect(decidePrepare(tx(XID, "inUse", 1))).toEqual({ kind: "prepare" });
    expect(failureText(decidePrepare(tx(XID, "prepared", 1)))).toBe(
      "XAException:code=-6,msg=Cannot call prepare now.",
    );
  });

  test("COMMIT follows XATransaction.commit: two-phase needs PREPARE, one-phase may follow it", () => {
    const twoPhase =
      "XAException:code=-6,msg=Cannot do 2 phase commit if the transaction has not been prepared.";
    expect(failureText(decideCommit(tx(XID, "start"), false))).toBe(twoPhase);
    expect(failureText(decideCommit(tx(XID, "inUse", 2), false))).toBe(twoPhase);
    expect(decideCommit(tx(XID, "start"), true)).toEqual({ kind: "empty" });
    expect(decideCommit(tx(XID, "inUse", 2), true)).toEqual({ kind: "commit", wasPrepared: false });
    expect(decideCommit(tx(XID, "prepared", 2), false)).toEqual({
      kind: "commit",
      wasPrepared: true,
    });
    expect(decideCommit(tx(XID, "prepared", 2), true)).toEqual({
      kind: "commit",
      wasPrepared: true,
    });
  });

  test("a local transaction commits whichever commit type arrives, as LocalTransaction ignores it", () => {
    for (const onePhase of [true, false]) {
      expect(decideCommit(tx(LOCAL, "inUse", 1), onePhase)).toEqual({
        kind: "commit",
        wasPrepared: false,
      });
      expect(decideCommit(tx(LOCAL, "start"), onePhase)).toEqual({ kind: "empty" });
    }
  });

  test("puts are refused into a prepared branch and beyond the per-transaction limits", () => {
    const limits = { messagesMax: 2, bytesMax: 10 };
    expect(refusePut(tx(XID, "inUse", 1), 3, limits)).toBeUndefined();
    expect(refusePut(tx(XID, "prepared", 1), 3, limits)?.message).toBe(
      "Cannot add message to transaction 'XID:1:0a:0b:q': it is prepared",
    );
    expect(refusePut(tx(LOCAL, "inUse", 2), 1, limits)?.message).toContain("2 messages");
    expect(refusePut(tx(LOCAL, "inUse", 1), 8, limits)?.message).toContain("more than 10 bytes");
    expect(refusePut(tx(LOCAL, "inUse", 1), 7, limits)).toBeUndefined();
  });

  test("timeouts are capped by maxTxTimeoutInSeconds, 0 means none, and spare prepared branches", () => {
    expect(deadlineFor(1000, 0, 60)).toBeUndefined();
    expect(deadlineFor(1000, 5, 60)).toBe(6000);
    expect(deadlineFor(1000, 600, 60)).toBe(61_000);
    const open = { ...tx(XID, "inUse", 1), deadlineMs: 6000 };
    expect(isExpired(open, 5999)).toBe(false);
    expect(isExpired(open, 6000)).toBe(true);
    expect(isExpired({ ...open, phase: "prepared" }, 10_000)).toBe(false);
    expect(isExpired({ ...open, deadlineMs: undefined }, 10_000)).toBe(false);
  });

  test("XA codes are javax.transaction.xa's", () => {
    expect(XA).toEqual({
      OK: 0,
      RDONLY: 3,
      HEURRB: 6,
      HEURCOM: 7,
      HEURHAZ: 8,
      RBOTHER: 104,
      RMERR: -3,
      NOTA: -4,
      PROTO: -6,
    });
  });
});
