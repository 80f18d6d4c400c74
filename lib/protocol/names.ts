/**
 * @module Group names, checked alike by the broker (before a group reaches its tables or the
 * disk) and by the client (before a consumer sends one), and `printable`, which keeps a hostile
 * name from forging log lines or replies. Pure. Topic names, which only the broker checks, are in
 * lib/config/names.ts.
 */
import { BrokerError } from "../errors.ts";
import { GROUP_NAME_BYTES_MAX } from "../limits.ts";

const GROUP_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_@\-]*$/;

/** Returns why `group` is not a valid group name, or undefined when it is. */
export function groupNameProblem(group: string): string | undefined {
  if (group.length === 0) return "group name is empty";
  if (group.length > GROUP_NAME_BYTES_MAX) {
    return `group name is longer than ${GROUP_NAME_BYTES_MAX} characters`;
  }
  if (!GROUP_PATTERN.test(group)) {
    return `group name '${printable(group)}' may use only letters, digits, '_', '-' and '@'`;
  }
  return undefined;
}

export function checkGroupName(group: string): void {
  const problem = groupNameProblem(group);
  if (problem) throw new BrokerError("invalidName", problem);
}

/** Escapes control characters so a hostile name cannot forge log lines. */
export function printable(text: string, maxLength = 64): string {
  const clipped = text.length > maxLength ? `${text.slice(0, maxLength)}...` : text;
  let out = "";
  for (const char of clipped) {
    const code = char.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, "0")}` : char;
  }
  return out;
}
