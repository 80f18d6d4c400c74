/**
 * @module Quartz cron expressions, as MetaQ's `deleteWhen` uses them: six or seven fields
 * (second minute hour day-of-month month day-of-week [year]) with `*`, `?`, lists, ranges,
 * steps and month/day names. `L`, `W` and `#` are refused with a clear error rather than
 * misread. Times are evaluated in the local time zone, as Quartz does.
 */

export class CronError extends Error {
  override readonly name = "CronError";
}

export interface CronSchedule {
  readonly source: string;
  readonly seconds: ReadonlySet<number>;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  /** Undefined means "any" (`?` or `*`). */
  readonly daysOfMonth?: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** Quartz numbering: 1 = Sunday ... 7 = Saturday. Undefined means "any". */
  readonly daysOfWeek?: ReadonlySet<number>;
  readonly years?: ReadonlySet<number>;
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/** Look this far ahead for the next firing; a schedule that never fires in it is an error. */
const LOOKAHEAD_MINUTES = 366 * 24 * 60 * 5;

export function parseCron(source: string): CronSchedule {
  const fields = source.trim().split(/\s+/);
  if (fields.length !== 6 && fields.length !== 7) {
    throw new CronError(
      `Cannot parse cron '${source}': expected 6 or 7 fields (sec min hour day month weekday [year])`,
    );
  }
  const [second, minute, hour, dayOfMonth, month, dayOfWeek, year] = fields;
  const field = (text: string, min: number, max: number, names?: string[]) =>
    parseField(source, text, { min, max, names });
  const anyDay = (text: string) => text === "?" || text === "*";
  if (!anyDay(dayOfMonth) && !anyDay(dayOfWeek)) {
    throw new CronError(
      `Cannot parse cron '${source}': give either a day-of-month or a day-of-week, and '?' for the other`,
    );
  }
  return {
    source,
    seconds: field(second, 0, 59),
    minutes: field(minute, 0, 59),
    hours: field(hour, 0, 23),
    daysOfMonth: anyDay(dayOfMonth) ? undefined : field(dayOfMonth, 1, 31),
    months: field(month, 1, 12, MONTHS),
    daysOfWeek: anyDay(dayOfWeek) ? undefined : field(dayOfWeek, 1, 7, DAYS),
    years: year === undefined || year === "*" ? undefined : field(year, 1970, 2199),
  };
}

/** The first time strictly after `afterMs` at which the schedule fires, or undefined. */
export function nextFireMs(schedule: CronSchedule, afterMs: number): number | undefined {
  const start = new Date(afterMs + 1000 - (afterMs % 1000));
  const minuteStart = new Date(start);
  minuteStart.setSeconds(0, 0);
  for (let step = 0; step < LOOKAHEAD_MINUTES; step++) {
    const minute = new Date(minuteStart.getTime() + step * 60_000);
    if (!minuteMatches(schedule, minute)) continue;
    const firstSecond = step === 0 ? start.getSeconds() : 0;
    for (let second = firstSecond; second < 60; second++) {
      if (schedule.seconds.has(second)) return minute.getTime() + second * 1000;
    }
  }
  return undefined;
}

function minuteMatches(schedule: CronSchedule, date: Date): boolean {
  return schedule.minutes.has(date.getMinutes()) &&
    schedule.hours.has(date.getHours()) &&
    schedule.months.has(date.getMonth() + 1) &&
    (schedule.daysOfMonth?.has(date.getDate()) ?? true) &&
    (schedule.daysOfWeek?.has(date.getDay() + 1) ?? true) &&
    (schedule.years?.has(date.getFullYear()) ?? true);
}

interface Range {
  readonly min: number;
  readonly max: number;
  readonly names?: string[];
}

function parseField(source: string, text: string, range: Range): Set<number> {
  const values = new Set<number>();
  for (const part of text.split(",")) {
    const [base, stepText] = part.split("/");
    const step = stepText === undefined ? 1 : parseNumber(source, stepText, range, false);
    if (step < 1) throw new CronError(`Cannot parse cron '${source}': step must be positive`);
    let low: number;
    let high: number;
    if (base === "*" || base === "?") {
      [low, high] = [range.min, range.max];
    } else if (base.includes("-")) {
      const [from, to] = base.split("-");
      [low, high] = [parseNumber(source, from, range), parseNumber(source, to, range)];
    } else {
      low = parseNumber(source, base, range);
      high = stepText === undefined ? low : range.max;
    }
    if (low > high) {
      throw new CronError(`Cannot parse cron '${source}': range ${base} is backwards`);
    }
    for (let value = low; value <= high; value += step) values.add(value);
  }
  return values;
}

function parseNumber(source: string, text: string, range: Range, named = true): number {
  const upper = text.toUpperCase();
  const nameIndex = named && range.names ? range.names.indexOf(upper) : -1;
  if (nameIndex >= 0) return nameIndex + 1;
  if (!/^\d+$/.test(text)) {
    throw new CronError(
      `Cannot parse cron '${source}': '${text}' is not supported (only numbers, names, *, ?, -, /, ,)`,
    );
  }
  const value = Number(text);
  if (named && (value < range.min || value > range.max)) {
    throw new CronError(
      `Cannot parse cron '${source}': ${value} is outside ${range.min}-${range.max}`,
    );
  }
  return value;
}
