/**
 * Calendar days in the operator's time zone (TIMEZONE, an IANA name; default UTC): where budgets reset and
 * usage is rolled up. Days are labelled YYYY-MM-DD in that zone; their bounds are UTC instants, since every
 * stored timestamp is an ISO string in UTC and compares as one. Built on Intl (the ICU data Node ships), so
 * daylight-saving days of 23 and 25 hours come out right with no time-zone library.
 */

export const UTC = 'UTC';
const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The zone's canonical name (`utc` → `UTC`), or undefined when ICU does not know it. */
export function canonicalTimeZone(name: string): string | undefined {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

function parts(ms: number, timeZone: string) {
  const out: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(ms))
    if (p.type !== 'literal') out[p.type] = Number(p.value);
  return out as { year: number; month: number; day: number; hour: number; minute: number; second: number };
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The calendar day (YYYY-MM-DD) an instant falls on in the zone. */
export function localDay(instant: Date | number, timeZone: string = UTC): string {
  const ms = typeof instant === 'number' ? instant : instant.getTime();
  if (timeZone === UTC) return new Date(ms).toISOString().slice(0, 10);
  const p = parts(ms, timeZone);
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}`;
}

/** The zone's offset from UTC at an instant, in ms (Asia/Shanghai: +8 h). */
function offsetMs(ms: number, timeZone: string): number {
  const p = parts(ms, timeZone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** Calendar arithmetic on a YYYY-MM-DD label (no zone involved). */
export function addDays(day: string, days: number): string {
  return new Date(Date.parse(`${day}T00:00:00.000Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/**
 * The first instant of a local day, in ms since the epoch. Usually local midnight; where a daylight-saving
 * change skips midnight (the clocks jump from 23:59:59 to 01:00) the day begins at the change.
 */
export function dayStartMs(day: string, timeZone: string = UTC): number {
  const midnightAsUtc = Date.parse(`${day}T00:00:00.000Z`);
  if (timeZone === UTC) return midnightAsUtc;
  // The offsets in force around that day: one of them is the offset at the day's first instant.
  const candidates = [-DAY_MS, 0, DAY_MS]
    .map((shift) => midnightAsUtc - offsetMs(midnightAsUtc + shift, timeZone))
    .filter((ms) => localDay(ms, timeZone) === day);
  // A day the zone skipped altogether (Pacific/Apia, 2011-12-30) is empty: it starts where the next one does.
  return candidates.length ? Math.min(...candidates) : dayStartMs(addDays(day, 1), timeZone);
}

/** dayStartMs as the ISO string stored timestamps compare with. */
export const dayStartIso = (day: string, timeZone: string = UTC): string =>
  new Date(dayStartMs(day, timeZone)).toISOString();
