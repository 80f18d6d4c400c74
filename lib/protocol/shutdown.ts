/**
 * @module The `503` text a draining broker answers every request it reads once its shutdown began
 * (lib/server/tcp_server.ts). A request read after that is never served, so a client that saw
 * this answer on a connection knows that whatever it writes there afterwards has no effect, even
 * if the connection then closes before answering it (lib/client/connection.ts).
 */
export const SHUTTING_DOWN_REASON =
  "Cannot serve request: this broker is shutting down; retry on another broker";
