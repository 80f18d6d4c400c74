/**
 * @module Bearer-token authentication for the HTTP port: `Authorization: Bearer <token>` names a
 * `[user=...]` by its token. What each route needs follows the TCP table in
 * lib/security/access.ts. The dashboard page itself and the health probes are open (they hold no
 * data); everything the page loads asks for the token, which the page keeps in the browser.
 *
 * | route                                                        | needs                   |
 * | ------------------------------------------------------------ | ----------------------- |
 * | GET /, /healthz, /readyz                                     | nothing                 |
 * | /metrics, /v1/overview, /v1/events, /v1/stats..., /v1/cluster| any user                |
 * | /v1/uplink, GET /v1/delayed                                  | any user                |
 * | DELETE /v1/delayed/ID (cancel a delayed message)             | produce on some topic   |
 * | GET /v1/schedules                                            | any user                |
 * | POST /v1/schedules..., DELETE /v1/schedules/NAME             | admin                   |
 * | GET /v1/topics, /v1/whoami                                   | any user                |
 * | POST /v1/topics (create, grow), DELETE /v1/topics/T          | admin                   |
 * | GET /v1/topics/T                                             | produce or consume on T |
 * | POST /v1/topics/T/messages, MetaQ's /put                     | produce on T            |
 * | GET /v1/topics/T/partitions/..., /v1/topics/T/stream,        | consume on T            |
 * |   MetaQ's /get and /offset                                   |                         |
 * | GET /v1/groups...                                            | consume on some topic   |
 * | POST /v1/groups/G/reset, DELETE /v1/groups/G,                | admin                   |
 * | /v1/stats/text/reset and /config                             |                         |
 */
import type { MiddlewareHandler } from "hono";
import type { Broker } from "../broker/broker.ts";
import { BrokerError } from "../errors.ts";
import { type AccessControl, refusal, type Requirement } from "../security/access.ts";
import { errorBody, jsonResponse } from "./respond.ts";

/** Answers 401/403 before any route runs when the request lacks the permission it needs. */
export function bearerAuth(access: AccessControl, broker: Broker): MiddlewareHandler {
  return async (c, next) => {
    const url = new URL(c.req.url);
    const requirement = httpRequirement(c.req.method, url);
    if (requirement.kind === "none") return await next();
    const token = bearerToken(c.req.header("authorization"));
    const principal = token === undefined ? undefined : access.authenticateToken(token);
    const counters = broker.stats.counters;
    if (!principal) {
      counters.authFailures += 1;
      const reason = token === undefined
        ? "send Authorization: Bearer <token>"
        : "unknown or wrong token";
      broker.logger.log("warn", "Refusing HTTP request: not authenticated", {
        path: url.pathname.slice(0, 120),
        reason,
      });
      return jsonResponse(401, errorBody(new BrokerError("unauthorized", reason)), {
        "www-authenticate": 'Bearer realm="metaq"',
      });
    }
    const reason = refusal(principal, requirement);
    if (reason !== undefined) {
      counters.authDenied += 1;
      broker.logger.log("warn", "Refusing HTTP request: not permitted", {
        user: principal.name,
        reason,
      });
      return jsonResponse(403, errorBody(new BrokerError("forbidden", reason)));
    }
    await next();
  };
}

/** What an HTTP request needs (the table at the top). */
export function httpRequirement(method: string, url: URL): Requirement {
  const path = url.pathname;
  if (path === "/" || path === "/healthz" || path === "/readyz") {
    return method === "GET" || method === "HEAD" ? { kind: "none" } : { kind: "any" };
  }
  if (!path.startsWith("/v1/") && path !== "/metrics") return metaqPluginRequirement(path, url);
  const parts = path.split("/").slice(2).map(decodePart);
  if (parts[0] === "topics") {
    if (parts.length === 1) {
      return method === "POST" ? { kind: "admin", what: "create topics" } : { kind: "any" };
    }
    const topic = parts[1];
    if (parts.length === 2 && method === "DELETE") {
      return { kind: "admin", what: "delete topics" };
    }
    if (parts.length === 2) return { kind: "produceOrConsume", topic };
    if (parts[2] === "messages" && method === "POST") return { kind: "produce", topics: [topic] };
    return { kind: "consume", topics: [topic] };
  }
  if (parts[0] === "delayed" && method === "DELETE") return { kind: "produce" };
  if (parts[0] === "schedules" && method !== "GET") {
    return { kind: "admin", what: "change schedules" };
  }
  if (parts[0] === "groups") {
    if (method === "POST") return { kind: "admin", what: "reset group offsets" };
    if (method === "DELETE") return { kind: "admin", what: "delete consumer groups" };
    return { kind: "consume" };
  }
  if (parts[0] === "stats" && parts[1] === "text") {
    if (parts[2] === "reset") return { kind: "admin", what: "reset statistics" };
    if (parts[2] === "config") return { kind: "admin", what: "read the configuration" };
  }
  return { kind: "any" };
}

/** MetaQ's plugin picks the operation by the first character after `/`. */
function metaqPluginRequirement(path: string, url: URL): Requirement {
  const topic = url.searchParams.get("topic") ?? "";
  switch (path.charAt(1)) {
    case "p":
      return { kind: "produce", topics: [topic] };
    case "g":
    case "o":
      return { kind: "consume", topics: [topic] };
    default:
      return { kind: "any" };
  }
}

/** Who a request's token names, for the dashboard to show only what that user may do. */
export interface Identity {
  /** The user's name; null when the broker has no users. */
  readonly user: string | null;
  /** Whether the admin routes will accept this user (everyone, without users). */
  readonly admin: boolean;
  /** Whether the broker asks for tokens at all. */
  readonly authentication: boolean;
}

/** The identity behind an Authorization header (already checked by `bearerAuth`). */
export function identityOf(
  access: AccessControl | undefined,
  header: string | undefined,
): Identity {
  if (!access?.enabled) return { user: null, admin: true, authentication: false };
  const token = bearerToken(header);
  const principal = token === undefined ? undefined : access.authenticateToken(token);
  return { user: principal?.name ?? null, admin: principal?.admin ?? false, authentication: true };
}

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer[ ]+(\S{1,1024})\s*$/i.exec(header ?? "");
  return match?.[1];
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
