/**
 * @module Validation of names that reach the file system or the wire: topics and groups.
 * Checked before anything is created, so a bad name never makes a file or directory.
 */
import { BrokerError } from "../errors.ts";
import { GROUP_NAME_BYTES_MAX, TOPIC_NAME_BYTES_MAX } from "../limits.ts";

const TOPIC_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.\-]*$/;
const GROUP_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_@\-]*$/;

/** Returns why `topic` is not a valid topic name, or undefined when it is. */
export function topicNameProblem(topic: string): string | undefined {
  if (topic.length === 0) return "topic name is empty";
  if (topic.length > TOPIC_NAME_BYTES_MAX) {
    return `topic name is longer than ${TOPIC_NAME_BYTES_MAX} characters`;
  }
  if (!TOPIC_PATTERN.test(topic)) {
    return `topic name '${printable(topic)}' may use only letters, digits, '_', '-' and '.', ` +
      "and may not start with '.' or '-'";
  }
  return undefined;
}

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

export function checkTopicName(topic: string): void {
  const problem = topicNameProblem(topic);
  if (problem) throw new BrokerError("invalidName", problem);
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
