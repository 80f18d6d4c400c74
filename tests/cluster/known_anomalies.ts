/**
 * @module Broker bugs the campaign found and a failing test already reproduces. A scenario counts
 * a violation matching one of these under `known` (printed in its summary line and JSON result)
 * instead of failing, so one open bug does not turn every run red while its fix is pending;
 * `CHAOS_STRICT=1` fails on them too. Remove an entry together with the fix: its reproduction
 * then passes (`bun test --todo <file>`) and must become a plain test.
 */
import type { KnownAnomaly } from "./checker.ts";

// None open. R01 (a forwarded COMMIT answered 503 after its coordinator failed over, though it
// committed) was fixed: tests/chaos/r01_forwarded_commit.test.ts is its regression test.
export const KNOWN_ANOMALIES: readonly KnownAnomaly[] = [];
