/**
 * @module The topic catalogue of a broker that runs alone, kept in one small file beside the
 * partitions (`<dataPath>/topic-catalogue`). A change is written whole, atomically (temp file,
 * fsync, rename, directory fsync: Storage.writeFileAtomic) before it is applied and answered, so
 * after a crash the file holds either the catalogue before the change or the one after it. The
 * catalogue is small and changes at an operator's pace, so rewriting it whole is cheap; a log
 * with snapshots (as the group offsets use) would add compaction for nothing. On a cluster the
 * catalogue lives in `__cluster-0` instead (cluster_state.ts).
 *
 * ```text
 * metaq-topic-catalogue 1
 * {"orders":{"partitions":8},"old":{"deleted":true}}
 * crc 123456789
 * ```
 *
 * The CRC covers the lines before it; a file that fails it stops the broker (a catalogue
 * guessed wrong would serve deleted topics or lose partitions).
 */
import { crc32 } from "../crc32.ts";
import { BrokerError } from "../errors.ts";
import { joinPath, type Storage } from "../store/storage.ts";
import { TopicCatalogue, type TopicRecord } from "../config/topic_catalogue.ts";

export const CATALOGUE_FILE = "topic-catalogue";
const HEADER = "metaq-topic-catalogue 1";

/** Where a catalogue change goes: durably recorded, then applied (the broker's TopicAdmin). */
export interface CatalogueStore {
  /** The catalogue now; undefined while a cluster's metadata is not read yet. */
  catalogue(): TopicCatalogue | undefined;
  /** Resolves once the catalogue can be read (a cluster's metadata initialized), bounded. */
  ready?(): Promise<unknown>;
  /** Records and applies `record`; rejects with a BrokerError when it cannot apply. */
  commit(record: TopicRecord): Promise<void>;
}

export class TopicCatalogueFile implements CatalogueStore {
  readonly #catalogue = new TopicCatalogue();
  readonly #storage: Storage;
  readonly #path: string;
  /** Changes one at a time: each writes the file the previous one left. */
  #queue: Promise<void> = Promise.resolve();

  private constructor(storage: Storage, dataPath: string) {
    this.#storage = storage;
    this.#path = joinPath(dataPath, CATALOGUE_FILE);
  }

  /** Reads the catalogue in `dataPath` (empty when there is no file yet). */
  static open(storage: Storage, dataPath: string): TopicCatalogueFile {
    const file = new TopicCatalogueFile(storage, dataPath);
    const bytes = storage.readFile(file.#path);
    if (bytes !== undefined) file.#catalogue.restore(decodeCatalogue(bytes, file.#path));
    return file;
  }

  catalogue(): TopicCatalogue {
    return this.#catalogue;
  }

  commit(record: TopicRecord): Promise<void> {
    const next = this.#queue.then(async () => {
      const problem = this.#catalogue.problemWith(record);
      if (problem) {
        throw BrokerError.verbatim("badRequest", `Cannot change topic ${record.name}: ${problem}`);
      }
      const after = new TopicCatalogue();
      after.restore(this.#catalogue.toJson());
      after.apply(record);
      await this.#storage.writeFileAtomic(this.#path, encodeCatalogue(after));
      this.#catalogue.apply(record);
    });
    this.#queue = next.catch(() => {});
    return next;
  }
}

function encodeCatalogue(catalogue: TopicCatalogue): Uint8Array {
  const body = `${HEADER}\n${JSON.stringify(catalogue.toJson())}\n`;
  const bytes = new TextEncoder().encode(body);
  return new TextEncoder().encode(`${body}crc ${crc32(bytes)}\n`);
}

function decodeCatalogue(bytes: Uint8Array, path: string): unknown {
  const text = new TextDecoder().decode(bytes);
  const lines = text.split("\n");
  const body = `${lines[0]}\n${lines[1]}\n`;
  const crc = /^crc (\d+)$/.exec(lines[2] ?? "");
  if (
    lines[0] !== HEADER || !crc || Number(crc[1]) !== crc32(new TextEncoder().encode(body))
  ) {
    throw new BrokerError(
      "corruption",
      `${path} is damaged (its checksum does not match); restore it from a backup, or remove ` +
        "it to fall back to the topics server.ini configures",
    );
  }
  return JSON.parse(lines[1]);
}
