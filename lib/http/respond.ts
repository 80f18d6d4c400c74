/**
 * @module What every HTTP route shares: the one error shape (`{ error: { kind, message } }` with
 * the status from lib/errors.ts), bounded body reading, and strict parameter parsing. Parsing
 * failures are BrokerErrors, so a bad request is answered before anything changes.
 */
import { topicNameProblem } from "../config/names.ts";
import { printable } from "../protocol/names.ts";
import { BrokerError, type ErrorKind, ERRORS } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { parseTimeText, TIME_TEXT_HINT } from "../time_text.ts";

export const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" } as const;
export const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

/** A JSON response; `status` is any code the broker uses. */
export function jsonResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { ...JSON_HEADERS, ...headers },
  });
}

/** A reply text or byte slice as a Response body (broker buffers never use shared memory). */
export function replyBody(text: string | Uint8Array | undefined): string | Uint8Array<ArrayBuffer> {
  return (text ?? "") as string | Uint8Array<ArrayBuffer>;
}

/**
 * Statuses that differ on HTTP: MetaQ answers a partition out of range with 500 on the wire
 * (kept there for its clients), but over HTTP it is the client's mistake, a 400.
 */
const HTTP_STATUS: Partial<Record<ErrorKind, number>> = { wrongPartition: 400 };

/** The JSON error body for `error`, with its status. */
export function errorResponse(error: BrokerError): Response {
  const headers: Record<string, string> = error.kind === "requestTooLarge"
    ? { connection: "close" }
    : {};
  return jsonResponse(HTTP_STATUS[error.kind] ?? error.status, errorBody(error), headers);
}

export function errorBody(error: BrokerError): { error: { kind: ErrorKind; message: string } } {
  return { error: { kind: error.kind, message: error.message } };
}

/** The kind a MetaQ reply code stands for, when only the code and text are known. */
export function kindForStatus(code: number): ErrorKind {
  const preferred: Record<number, ErrorKind> = {
    400: "badRequest",
    403: "partitionClosed",
    404: "notFound",
    500: "internal",
    503: "unavailable",
    504: "timeout",
  };
  return preferred[code] ??
    (Object.keys(ERRORS) as ErrorKind[]).find((kind) => ERRORS[kind].status === code) ??
    "internal";
}

/**
 * Reads the whole body, refusing it with `requestTooLarge` (413) as soon as it is known to be
 * larger than `bytesMax`: from Content-Length before reading, else by counting while reading.
 */
export async function readBody(request: Request, bytesMax: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > bytesMax) {
    throw tooLarge(`Content-Length ${declared}`, bytesMax);
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > bytesMax) {
      await reader.cancel().catch(() => {});
      throw tooLarge(`more than ${bytesMax} bytes`, bytesMax);
    }
    chunks.push(value);
  }
  return chunks.length === 1 ? chunks[0] : concatBytes(chunks, total);
}

/** Reads a JSON body (at most `bytesMax` bytes); malformed JSON is a 400. */
export async function readJson(request: Request, bytesMax: number): Promise<unknown> {
  const bytes = await readBody(request, bytesMax);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new BrokerError("badRequest", `Cannot parse JSON body: ${(error as Error).message}`);
  }
}

export function isJsonRequest(request: Request): boolean {
  const type = request.headers.get("content-type") ?? "";
  return /^application\/([a-z.+-]+\+)?json\b/i.test(type.trim());
}

/** A topic name from a path or body; invalid names are 400 `invalidName`. */
export function topicParam(value: unknown): string {
  if (typeof value !== "string") {
    throw new BrokerError("invalidName", "topic name must be a string");
  }
  const problem = topicNameProblem(value);
  if (problem) throw new BrokerError("invalidName", problem);
  return value;
}

/** A partition number (0..2^31-1) from text or JSON; anything else is a 400. */
export function partitionParam(value: unknown): number {
  const number = typeof value === "string" && /^\d{1,10}$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isInteger(number) || number < 0 || number > 2 ** 31) {
    throw new BrokerError(
      "badRequest",
      `Cannot read partition ${describe(value)}: expected a non-negative integer`,
    );
  }
  return number;
}

/** A byte offset (0..2^53-1) from text or JSON; anything else is a 400 `invalidOffset`. */
export function offsetParam(value: unknown): number {
  const number = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0) {
    throw new BrokerError(
      "invalidOffset",
      `offset ${describe(value)} is not a non-negative integer`,
    );
  }
  return number;
}

/** A time as lib/time_text.ts spells it, named `name`; anything else is a 400 `badRequest`. */
export function timeParam(name: string, value: unknown): number {
  const ms = typeof value === "string" ? parseTimeText(value) : undefined;
  if (ms === undefined) {
    throw new BrokerError("badRequest", `${name} ${describe(value)}: ${TIME_TEXT_HINT}`);
  }
  return ms;
}

/** An integer in [min, max] from a query string; anything else is a 400 `badRequest`. */
export function integerParam(
  name: string,
  value: string | undefined,
  range: { min: number; max: number; default: number },
): number {
  if (value === undefined || value === "") return range.default;
  const number = /^-?\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!(number >= range.min && number <= range.max)) {
    throw new BrokerError(
      "badRequest",
      `Cannot read ${name} ${
        describe(value)
      }: expected an integer from ${range.min} to ${range.max}`,
    );
  }
  return number;
}

/** Short, quoted, printable rendering of a client-supplied value for error messages. */
export function describe(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  return `'${printable(text, 40)}'`;
}

function tooLarge(what: string, bytesMax: number): BrokerError {
  return new BrokerError("requestTooLarge", `${what} exceeds ${bytesMax} bytes`);
}
