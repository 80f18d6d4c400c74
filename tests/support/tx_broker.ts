/**
 * @module An in-process broker with transactions, on real files in a temp dir and a real port
 * (for integration tests), plus helpers to speak the raw protocol to it and to read a
 * partition's records straight from its log.
 */
import type { Clock } from "../../lib/clock.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { type App, assemble, type AssembleOptions } from "../../lib/app/assemble.ts";
import { type DecodedRecord, decodeRecords } from "../../lib/protocol/record.ts";
import type { Storage } from "../../lib/store/storage.ts";
import { RawSocket } from "./raw_socket.ts";

export interface TxBroker {
  readonly running: App;
  close(): Promise<void>;
}

/** Test-only hooks of the transactions part (a crash in the middle of a commit's append). */
export type TxHooks = Pick<AssembleOptions, "crashAfterCommitBytes" | "crash">;

export const TX_CONFIG = (dataPath: string, extra = "") => `
[system]
brokerId=7
numPartitions=2
dataPath=${dataPath}
maxMessageSize=1000
${extra}
[topic=test]
[topic=multi]
numPartitions=4
[topic=stat-*]
stat=true
`;

export async function startTxBroker(
  dataPath: string,
  options: {
    extra?: string;
    clock?: Clock;
    storage?: Storage;
    hooks?: TxHooks;
    /** Cut damaged logs at the damage (`--repair`). */
    repair?: boolean;
  } = {},
): Promise<TxBroker> {
  const running = await assemble({
    config: buildConfig({
      fileText: TX_CONFIG(dataPath, options.extra),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
    clock: options.clock,
    storage: options.storage,
    repair: options.repair,
    ...options.hooks,
  });
  return { running, close: () => running.close() };
}

/** Sends one request and returns the reply frame as `header` + body text. */
export async function ask(socket: RawSocket, request: string | Uint8Array) {
  socket.write(request);
  const frame = await socket.readFrame();
  return { header: frame.header, text: frame.body.toString(), body: frame.body };
}

/** A put line plus body; `txKey` makes it transactional (8 tokens). */
export function putLine(
  options: { topic?: string; partition?: number; body: string; txKey?: string; opaque: number },
): string {
  const { topic = "test", partition = 0, body, txKey, opaque } = options;
  const tx = txKey ? ` ${txKey}` : "";
  return `put ${topic} ${partition} ${Buffer.byteLength(body)} 0 -1${tx} ${opaque}\r\n${body}`;
}

/** Every record in a partition's log, read through the broker's store (acknowledged data). */
export function recordsOf(
  running: App,
  topic: string,
  partition: number,
): DecodedRecord[] {
  const log = running.store.get(topic, partition);
  if (!log || log.ackedEnd === log.startOffset) return [];
  const bytes = new Uint8Array(log.ackedEnd - log.startOffset);
  let at = log.startOffset;
  while (at < log.ackedEnd) {
    const length = log.readableAt(at, log.ackedEnd - at);
    log.readInto(bytes, at - log.startOffset, at, length);
    at += length;
  }
  return decodeRecords(bytes, log.startOffset);
}

export function payloads(records: readonly DecodedRecord[]): string[] {
  return records.map((record) => new TextDecoder().decode(record.data));
}

export async function connect(running: App): Promise<RawSocket> {
  return await RawSocket.connect(running.port);
}
