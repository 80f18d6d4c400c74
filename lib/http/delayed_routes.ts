/**
 * @module Delayed-message routes (docs/delayed.md): `GET /v1/delayed` is `delayed status` and
 * `DELETE /v1/delayed/:id` is `delayed cancel`; `/v1/schedules` lists, adds, pauses, resumes
 * and removes cron schedules (`cron`). All go through the edge (served by the node that holds
 * the delayed messages, in a cluster). Producing a delayed message is
 * `POST /v1/topics/T/messages` with `delayMs` or `deliverAt` (produce.ts).
 *
 * ```text
 * GET    /v1/schedules                 -> [ScheduleListing]
 * POST   /v1/schedules                 {name, cron, topic, partition?, payload, encoding?,
 *                                        attribute?, paused?} -> {name}
 * POST   /v1/schedules/:name/pause     -> {name}      (and /resume)
 * DELETE /v1/schedules/:name           -> {name}
 * ```
 */
import type { Hono } from "hono";
import { BrokerError } from "../errors.ts";
import type { Command } from "../protocol/commands.ts";
import { CRON_VERB, DELAYED_VERB } from "../protocol/delayed.ts";
import { HTTP_BODY_BYTES_MAX } from "../limits.ts";
import { decodeBase64 } from "./records.ts";
import type { AdminContext } from "./context.ts";
import { jsonResponse, kindForStatus, readJson } from "./respond.ts";
import { ask } from "./wire_reply.ts";

export function registerDelayedRoutes(app: Hono, context: AdminContext): void {
  const extension = async (
    verb: string,
    args: string[],
    body = new Uint8Array(0),
  ): Promise<string> => {
    const command: Command = { kind: "extension", verb, args, opaque: 0, body };
    const reply = await ask(context.dispatch, command);
    if (reply.kind === "result" && reply.code === 200) return reply.text;
    const code = reply.kind === "result" ? reply.code : 500;
    const text = reply.kind === "result" ? reply.text : "";
    throw BrokerError.verbatim(kindForStatus(code), text || `status ${code}`);
  };

  const delayed = (args: string[]) => extension(DELAYED_VERB, args);
  const cron = (action: string, name: string, body = new Uint8Array(0)) =>
    extension(CRON_VERB, [action, name, String(body.length)], body);

  app.get("/v1/delayed", async () => jsonResponse(200, JSON.parse(await delayed(["status", "-"]))));

  app.get("/v1/schedules", async () => jsonResponse(200, JSON.parse(await cron("list", "-"))));

  app.post("/v1/schedules", async (c) => {
    const input = await readJson(c.req.raw, HTTP_BODY_BYTES_MAX);
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      throw new BrokerError("badRequest", "Cannot add a schedule: the body must be a JSON object");
    }
    const { name, payload, encoding, ...rest } = input as Record<string, unknown>;
    if (typeof name !== "string") {
      throw new BrokerError("badRequest", "Cannot add a schedule: name must be a string");
    }
    if (typeof payload !== "string") {
      throw new BrokerError("badRequest", `Cannot add schedule ${name}: payload must be a string`);
    }
    const bytes = encoding === "base64"
      ? decodeBase64(payload, "payload")
      : encoding === undefined || encoding === "utf8"
      ? new TextEncoder().encode(payload)
      : undefined;
    if (!bytes) {
      throw new BrokerError(
        "badRequest",
        `Cannot add schedule ${name}: encoding is utf8 or base64`,
      );
    }
    const body = new TextEncoder().encode(JSON.stringify({ ...rest, payload: toBase64(bytes) }));
    return jsonResponse(200, { name: await cron("add", name, body) });
  });

  for (const action of ["pause", "resume"]) {
    app.post(
      `/v1/schedules/:name/${action}`,
      async (c) => jsonResponse(200, { name: await cron(action, c.req.param("name")) }),
    );
  }

  app.delete(
    "/v1/schedules/:name",
    async (c) => jsonResponse(200, { name: await cron("rm", c.req.param("name")) }),
  );

  app.delete("/v1/delayed/:id", async (c) => {
    const id = c.req.param("id");
    if (!/^-?\d{1,20}$/.test(id)) {
      throw new BrokerError("badRequest", `Cannot cancel '${id}': not a message id`);
    }
    return jsonResponse(200, { cancelled: await delayed(["cancel", id]) });
  });
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
