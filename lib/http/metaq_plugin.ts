/**
 * @module MetaQ's HTTP plugin (MetamorphosisOnJettyProcessor), answered the way it answers: the
 * first character after `/` picks the operation, so `/put`, `/put/3` and `/p` are all a put.
 *
 * ```text
 * /get...?topic=&partition=&group=&offset=&maxsize=     200 + raw record bytes, or code + text
 * /put...?topic=&partition=&flag=&length=[&checksum=]   body = message data; code + put reply text
 * /offset...?topic=&partition=&group=&offset=           code + offset text
 * anything else                                         400 Invalid request
 * ```
 *
 * The status is MetaQ's reply code (so a get below the first offset is a 301 whose body is the
 * offset to use) and the body is its text. Parameters MetaQ would fail to parse are a 400 here.
 * Every operation is the wire command sent through the edge, so in a cluster it is served by
 * the node that must serve it (a put by its partition's leader, a read by a node holding it).
 * A request without `group` reads as group `metaq-http`: a wire command needs one.
 */
import type { Broker } from "../broker/broker.ts";
import { BrokerError } from "../errors.ts";
import type { Command } from "../protocol/commands.ts";
import { int32, int64 } from "../protocol/parser.ts";
import { HTTP_READER_GROUP } from "./reads.ts";
import { readBody, replyBody, TEXT_HEADERS } from "./respond.ts";
import { ask, type Dispatch, type WireAnswer } from "./wire_reply.ts";

/** Answers one MetaQ HTTP plugin request. */
export async function handleMetaqPlugin(
  broker: Broker,
  dispatch: Dispatch,
  request: Request,
): Promise<Response> {
  const url = new URL(request.url);
  const params = new Params(url.searchParams);
  try {
    switch (url.pathname.charAt(1)) {
      case "g":
        return answerResponse(await ask(dispatch, getCommand(params)));
      case "p":
        return answerResponse(await ask(dispatch, await putCommand(broker, params, request)));
      case "o":
        return answerResponse(
          await ask(dispatch, {
            kind: "offset",
            topic: params.text("topic"),
            group: params.optional("group") || HTTP_READER_GROUP,
            partition: params.int32("partition"),
            offset: params.int64("offset").value,
            opaque: 0,
          }),
        );
      default:
        return textResponse(400, "Invalid request");
    }
  } catch (error) {
    if (error instanceof BrokerError) return textResponse(error.status, error.message);
    throw error;
  }
}

function getCommand(params: Params): Command {
  const offset = params.int64("offset");
  return {
    kind: "get",
    topic: params.text("topic"),
    group: params.optional("group") || HTTP_READER_GROUP,
    partition: params.int32("partition"),
    offset: offset.value,
    offsetIsLongMax: offset.isLongMax,
    maxSize: params.int32("maxsize"),
    opaque: 0,
  };
}

async function putCommand(broker: Broker, params: Params, request: Request): Promise<Command> {
  const topic = params.text("topic");
  const partition = params.int32("partition");
  const flag = params.int32("flag");
  const length = params.int32("length");
  const checksumText = params.optional("checksum")?.trim();
  const checksum = checksumText ? params.int32("checksum") : -1;
  if (length < 0) throw invalid("length", String(length));
  const body = await readBody(request, broker.config.system.maxMessageSize);
  if (body.length < length) {
    throw BrokerError.verbatim(
      "badRequest",
      `Bad request,body has ${body.length} bytes but length is ${length}`,
    );
  }
  return {
    kind: "put",
    topic,
    partition,
    flag,
    checksum,
    opaque: 0,
    body: body.subarray(0, length),
  };
}

/** MetaQ's code and text; a `value` reply's record bytes as they are. */
function answerResponse(answer: WireAnswer): Response {
  if (answer.kind === "value") {
    return new Response(replyBody(answer.body), {
      status: 200,
      headers: { "content-type": "application/octet-stream" },
    });
  }
  return new Response(answer.text, { status: answer.code, headers: TEXT_HEADERS });
}

function textResponse(status: number, text: string): Response {
  return new Response(text, { status, headers: TEXT_HEADERS });
}

function invalid(name: string, value: string | null): BrokerError {
  return BrokerError.verbatim(
    "badRequest",
    value === null
      ? `Bad request,missing parameter ${name}`
      : `Bad request,invalid ${name}:${value.slice(0, 64)}`,
  );
}

/** Query parameters parsed as MetaQ's Java code parses them (Integer/Long.parseInt). */
class Params {
  readonly #search: URLSearchParams;

  constructor(search: URLSearchParams) {
    this.#search = search;
  }

  optional(name: string): string | undefined {
    return this.#search.get(name) ?? undefined;
  }

  text(name: string): string {
    const value = this.#search.get(name);
    if (value === null || value === "") throw invalid(name, null);
    return value;
  }

  int32(name: string): number {
    const value = this.text(name);
    try {
      return int32(value);
    } catch {
      throw invalid(name, value);
    }
  }

  int64(name: string): { value: number; isLongMax: boolean } {
    const value = this.text(name);
    try {
      return int64(value);
    } catch {
      throw invalid(name, value);
    }
  }
}
