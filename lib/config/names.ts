/**
 * @module Validation of topic names, which reach the file system and the wire. Checked before
 * anything is created, so a bad name never makes a file or directory. Group names are checked by
 * the client too, so they live in lib/protocol/names.ts.
 */
import { BrokerError } from "../errors.ts";
import { TOPIC_NAME_BYTES_MAX } from "../limits.ts";
import { printable } from "../protocol/names.ts";

const TOPIC_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.\-]*$/;

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

export function checkTopicName(topic: string): void {
  const problem = topicNameProblem(topic);
  if (problem) throw new BrokerError("invalidName", problem);
}
