/**
 * @module Points in time as people type them, one spelling for the CLI and HTTP: ISO 8601 with
 * a zone (`2026-12-06T10:00:00Z`, `2026-12-06T11:00:00+01:00`), a date (`2026-12-06`, midnight
 * UTC) or milliseconds since 1970. A time without a zone is refused rather than guessed: the
 * broker's zone and the user's may differ.
 */

/** What a refusal tells the user to type instead. */
export const TIME_TEXT_HINT = "expected a time such as 2026-12-06T10:00:00Z (with a zone), a " +
  "date such as 2026-12-06 (UTC), or milliseconds since 1970";

/** Milliseconds since 1970, or undefined when `text` is not a time in one of the spellings. */
export function parseTimeText(text: string): number | undefined {
  let ms = Number.NaN;
  if (/^\d{10,}$/.test(text)) ms = Number(text);
  else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) ms = Date.parse(`${text}T00:00:00Z`);
  else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(text)) {
    ms = Date.parse(text);
  }
  return Number.isFinite(ms) ? ms : undefined;
}
