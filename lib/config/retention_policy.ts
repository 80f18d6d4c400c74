/**
 * @module MetaQ's `deletePolicy` values: `delete,<age>` and `archive,<age>[,<compress>]`,
 * where age is an integer with an optional unit (s, m, h; no unit means hours).
 */

export type DeletePolicy =
  | { readonly kind: "delete"; readonly maxAgeMs: number; readonly source: string }
  | {
    readonly kind: "archive";
    readonly maxAgeMs: number;
    readonly compress: boolean;
    readonly source: string;
  };

export class DeletePolicyError extends Error {
  override readonly name = "DeletePolicyError";
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, "": 3_600_000 };

export function parseDeletePolicy(source: string): DeletePolicy {
  const parts = source.split(",").map((part) => part.trim());
  const [name, ageText, compressText] = parts;
  if ((name !== "delete" && name !== "archive") || ageText === undefined) {
    throw new DeletePolicyError(
      `Cannot parse deletePolicy '${source}': expected 'delete,<age>' or 'archive,<age>[,true]'`,
    );
  }
  if (parts.length > (name === "delete" ? 2 : 3)) {
    throw new DeletePolicyError(`Cannot parse deletePolicy '${source}': too many arguments`);
  }
  const match = /^(\d+)([smh]?)$/.exec(ageText);
  if (!match) {
    throw new DeletePolicyError(
      `Cannot parse deletePolicy '${source}': age '${ageText}' must be a number with s, m or h`,
    );
  }
  const maxAgeMs = Number(match[1]) * UNIT_MS[match[2]];
  if (name === "delete") return { kind: "delete", maxAgeMs, source };
  if (compressText !== undefined && compressText !== "true" && compressText !== "false") {
    throw new DeletePolicyError(
      `Cannot parse deletePolicy '${source}': compress must be true or false`,
    );
  }
  return { kind: "archive", maxAgeMs, compress: compressText === "true", source };
}
