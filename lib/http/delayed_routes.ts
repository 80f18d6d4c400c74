/**
 * @module Delayed-message routes (docs/delayed.md): `GET /v1/delayed` is `delayed status` and
 * `DELETE /v1/delayed/:id` is `delayed cancel`, both through the edge (served by the node that
 * holds the delayed messages, in a cluster). Producing one is `POST /v1/topics/T/messages` with
 * `delayMs` or `deliverAt` (produce.ts).
 */
import type { Hono } from "hono";
import { BrokerError } from "../errors.ts";
import type { Command } from "../protocol/commands.ts";
import { DELAYED_VERB } from "../protocol/delayed.ts";
import type { AdminContext } from "./context.ts";
import { jsonResponse, kindForStatus } from "./respond.ts";
import { ask } from "./wire_reply.ts";

export function registerDelayedRoutes(app: Hono, context: AdminContext): void {
  const delayed = async (args: string[]): Promise<string> => {
    const command: Command = {
      kind: "extension",
      verb: DELAYED_VERB,
      args,
      opaque: 0,
      body: new Uint8Array(0),
    };
    const reply = await ask(context.dispatch, command);
    if (reply.kind === "result" && reply.code === 200) return reply.text;
    const code = reply.kind === "result" ? reply.code : 500;
    const text = reply.kind === "result" ? reply.text : "";
    throw BrokerError.verbatim(kindForStatus(code), text || `status ${code}`);
  };

  app.get("/v1/delayed", async () => jsonResponse(200, JSON.parse(await delayed(["status", "-"]))));

  app.delete("/v1/delayed/:id", async (c) => {
    const id = c.req.param("id");
    if (!/^-?\d{1,20}$/.test(id)) {
      throw new BrokerError("badRequest", `Cannot cancel '${id}': not a message id`);
    }
    return jsonResponse(200, { cancelled: await delayed(["cancel", id]) });
  });
}
