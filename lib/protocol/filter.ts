/**
 * @module Message filters: the small language a consumer group's filter is written in, shared by
 * the broker (MetaQ's `group.<name>=<filter>` entries in `[topic=...]` sections) and the client
 * (a consumer's `filter` option). MetaQ named a Java class there; metaq cannot run Java, so a
 * Java class name parses as such, for the caller to report and ignore, and a MetaQ server.ini
 * still loads. Pure: strings and messages in, verdicts out. Not here: walking a `get` slice of
 * records (lib/broker/groups/filter.ts does that with `acceptsMessage`).
 *
 * ```text
 * filter  = any *( "||" any )          accepted when one alternative matches
 * any     = clause *( "&&" clause )    an alternative matches when all its clauses do
 * clause  = field op value             spaces around clauses are ignored
 * field   = "attribute" | "payload"    a message without attribute has attribute ""
 * op      = "="  equals   | "!=" differs      | "^=" starts with
 *         | "$=" ends with | "*=" contains
 * ```
 *
 * Examples: `attribute=gold`, `attribute^=eu- || attribute^=us-`, `payload*=ERROR && attribute!=`.
 * Values are compared as UTF-8 bytes for payloads and as strings for attributes; they cannot
 * contain `||` or `&&`.
 */

export type FilterOp = "=" | "!=" | "^=" | "$=" | "*=";

export interface FilterClause {
  readonly field: "attribute" | "payload";
  readonly op: FilterOp;
  readonly value: string;
}

/** Alternatives of conjunctions (`||` of `&&`). */
export interface MessageFilter {
  readonly source: string;
  readonly alternatives: readonly (readonly FilterClause[])[];
}

export type ParsedFilter =
  | { readonly kind: "filter"; readonly filter: MessageFilter }
  | { readonly kind: "javaClass"; readonly className: string }
  | { readonly kind: "invalid"; readonly reason: string };

const JAVA_CLASS = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+$/;
const CLAUSE = /^(attribute|payload)\s*(=|!=|\^=|\$=|\*=)(.*)$/;
const encoder = new TextEncoder();

/** Parses one filter (a `group.<name>=` value, or a consumer's `filter` option). */
export function parseFilter(source: string): ParsedFilter {
  const text = source.trim();
  if (JAVA_CLASS.test(text)) return { kind: "javaClass", className: text };
  if (text === "") return { kind: "invalid", reason: "the filter is empty" };
  const alternatives: FilterClause[][] = [];
  for (const alternative of text.split("||")) {
    const clauses: FilterClause[] = [];
    for (const part of alternative.split("&&")) {
      const match = CLAUSE.exec(part.trim());
      if (!match) {
        return {
          kind: "invalid",
          reason: `'${part.trim()}' is not <attribute|payload><=|!=|^=|$=|*=><value>`,
        };
      }
      clauses.push({
        field: match[1] as FilterClause["field"],
        op: match[2] as FilterOp,
        value: match[3].trim(),
      });
    }
    alternatives.push(clauses);
  }
  return { kind: "filter", filter: { source: text, alternatives } };
}

/** Whether a message passes `filter`. */
export function acceptsMessage(
  filter: MessageFilter,
  message: { readonly attribute?: string; readonly payload: Uint8Array },
): boolean {
  return filter.alternatives.some((clauses) =>
    clauses.every((clause) =>
      clause.field === "attribute"
        ? matchText(clause.op, message.attribute ?? "", clause.value)
        : matchBytes(clause.op, message.payload, encoder.encode(clause.value))
    )
  );
}

function matchText(op: FilterOp, actual: string, value: string): boolean {
  switch (op) {
    case "=":
      return actual === value;
    case "!=":
      return actual !== value;
    case "^=":
      return actual.startsWith(value);
    case "$=":
      return actual.endsWith(value);
    case "*=":
      return actual.includes(value);
  }
}

function matchBytes(op: FilterOp, actual: Uint8Array, value: Uint8Array): boolean {
  switch (op) {
    case "=":
      return actual.length === value.length && startsWithAt(actual, value, 0);
    case "!=":
      return !(actual.length === value.length && startsWithAt(actual, value, 0));
    case "^=":
      return startsWithAt(actual, value, 0);
    case "$=":
      return value.length <= actual.length &&
        startsWithAt(actual, value, actual.length - value.length);
    case "*=":
      return indexOfBytes(actual, value) >= 0;
  }
}

function startsWithAt(haystack: Uint8Array, needle: Uint8Array, at: number): boolean {
  if (at < 0 || at + needle.length > haystack.length) return false;
  for (let i = 0; i < needle.length; i++) if (haystack[at + i] !== needle[i]) return false;
  return true;
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  if (needle.length === 0) return 0;
  for (let at = 0; at + needle.length <= haystack.length; at++) {
    if (haystack[at] === needle[0] && startsWithAt(haystack, needle, at)) return at;
  }
  return -1;
}
