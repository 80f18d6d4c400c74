/**
 * @module What `assemble` needs only when HTTP is on (Hono, the dashboard page, the HTTP
 * listener), in one module it imports dynamically: `--no-http` never loads them.
 */
export { clusterView } from "../http/cluster_view.ts";
export { groupsOverWire } from "../http/groups_over_wire.ts";
export { HttpPart } from "../http/http_part.ts";
