/**
 * @module A message's key and headers, as they travel in MetaQ's message attribute (the one
 * free string a MetaQ message has). Pure: shared by the CLI that writes them and every reader
 * that shows them (CLI, HTTP JSON).
 *
 * ```text
 * attribute = plain-text                     no key, no headers: the attribute as given
 *           | "metaq1?" form                 a key or headers
 * form      = pair *( "&" pair )             application/x-www-form-urlencoded
 * pair      = "k=" key | "a=" attribute | "h." name "=" value
 * ```
 *
 * Names and values are percent-encoded as in a URL query (`+` for a space). A header may
 * appear more than once; order is kept. A MetaQ client reads the same attribute as one opaque
 * string, so a message with a key stays readable by every MetaQ consumer; a plain attribute
 * that happens to start with `metaq1?` reads back as a form. A message forwarded by an uplink
 * carries its origin first (uplink_origin.ts): the form is read after it.
 */
import { ORIGIN_PREFIX } from "./uplink_origin.ts";

export const META_PREFIX = "metaq1?";

export interface MessageMeta {
  /** The attribute the sender gave, without key and headers. */
  readonly attribute?: string;
  readonly key?: string;
  readonly headers: readonly (readonly [string, string])[];
}

/** The attribute to store for `meta`; undefined when there is nothing to store. */
export function encodeMessageMeta(meta: MessageMeta): string | undefined {
  if (meta.key === undefined && meta.headers.length === 0) return meta.attribute;
  const form = new URLSearchParams();
  if (meta.key !== undefined) form.append("k", meta.key);
  if (meta.attribute !== undefined) form.append("a", meta.attribute);
  for (const [name, value] of meta.headers) form.append(`h.${name}`, value);
  return `${META_PREFIX}${form.toString()}`;
}

/** The key, headers and plain attribute a stored attribute holds. */
export function decodeMessageMeta(stored: string | undefined): MessageMeta {
  if (stored === undefined) return { headers: [] };
  let text = stored;
  if (text.startsWith(ORIGIN_PREFIX)) {
    const semicolon = text.indexOf(";");
    if (semicolon < 0) return { attribute: stored, headers: [] };
    text = text.slice(semicolon + 1);
  }
  if (!text.startsWith(META_PREFIX)) return { attribute: stored, headers: [] };
  let key: string | undefined;
  let attribute: string | undefined;
  const headers: [string, string][] = [];
  for (const [name, value] of new URLSearchParams(text.slice(META_PREFIX.length))) {
    if (name === "k") key = value;
    else if (name === "a") attribute = value;
    else if (name.startsWith("h.")) headers.push([name.slice(2), value]);
    // other names: a later version's field, skipped
  }
  return { attribute, key, headers };
}

/** `-H name=value` as a header; undefined when there is no `=` or no name. */
export function parseHeader(text: string): [string, string] | undefined {
  const equals = text.indexOf("=");
  if (equals <= 0) return undefined;
  return [text.slice(0, equals), text.slice(equals + 1)];
}
