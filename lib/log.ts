/**
 * @module A small structured logger: one line per event on stderr, `level message key=value`.
 * Cores take a Logger as a parameter; tests pass `silentLogger` or a collecting one.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, string | number | bigint | boolean | undefined>>;

export interface Logger {
  log(level: LogLevel, message: string, fields?: LogFields): void;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Formats `fields` as ` key=value`, quoting values with spaces. */
export function formatFields(fields?: LogFields): string {
  if (!fields) return "";
  let text = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const raw = String(value);
    text += ` ${key}=${/[\s"=]/.test(raw) ? JSON.stringify(raw) : raw}`;
  }
  return text;
}

export function consoleLogger(
  minimum: LogLevel = "info",
  write = (line: string) => console.error(line),
): Logger {
  return {
    log(level, message, fields) {
      if (LEVELS[level] < LEVELS[minimum]) return;
      write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}${formatFields(fields)}`);
    },
  };
}

export const silentLogger: Logger = { log() {} };

/** Collects lines in memory: for tests that assert what was logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    log: (level, message, fields) => lines.push(`${level} ${message}${formatFields(fields)}`),
  };
}
