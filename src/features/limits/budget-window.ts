import { addDays, dayStartIso, localDay, UTC } from '../../core/timezone.js';
import type { BudgetPeriod, LimitScope } from './tables.js';

/** A budget's current window (a day or month in TIMEZONE, UTC by default) and the names its counters go by. */
export interface BudgetWindow {
  period: BudgetPeriod;
  /** 2025-01-31 for a day, 2025-01 for a month, in the zone. */
  id: string;
  /** ISO start (inclusive) and end (exclusive), UTC instants of the zone's midnights. */
  start: string;
  end: string;
  /** The zone when it is not UTC. */
  timeZone?: string;
}

/** The current window per period and zone: every budgeted request asks, and it changes once a day. */
const current = new Map<string, { window: BudgetWindow; startMs: number; endMs: number }>();

export function budgetWindow(period: BudgetPeriod, now: Date, timeZone: string = UTC): BudgetWindow {
  const key = `${period} ${timeZone}`;
  const ms = now.getTime();
  const hit = current.get(key);
  if (hit && ms >= hit.startMs && ms < hit.endMs) return { ...hit.window };
  const window = computeWindow(period, now, timeZone);
  current.set(key, { window, startMs: Date.parse(window.start), endMs: Date.parse(window.end) });
  return { ...window };
}

function computeWindow(period: BudgetPeriod, now: Date, timeZone: string): BudgetWindow {
  const today = localDay(now, timeZone);
  const first = period === 'day' ? today : `${today.slice(0, 7)}-01`;
  const next = period === 'day' ? addDays(today, 1) : nextMonth(first);
  return {
    period,
    id: period === 'day' ? today : today.slice(0, 7),
    start: dayStartIso(first, timeZone),
    end: dayStartIso(next, timeZone),
    ...(timeZone === UTC ? {} : { timeZone }),
  };
}

function nextMonth(first: string): string {
  const y = Number(first.slice(0, 4));
  const m = Number(first.slice(5, 7));
  return m === 12 ? `${y + 1}-01-01` : `${first.slice(0, 4)}-${String(m + 1).padStart(2, '0')}-01`;
}

export interface Subject {
  scope: LimitScope;
  subjectId: string;
}

export function counterName(subject: Subject & { period: BudgetPeriod }, window: BudgetWindow): string {
  // The zone is in the name: a changed TIMEZONE starts fresh counters, rebuilt from the ledger, instead of
  // adding to ones counted between other bounds under the same date.
  const zone = window.timeZone ? `@${window.timeZone}` : '';
  return `${subject.scope}:${subject.subjectId}:${subject.period}:${window.id}${zone}`;
}

export function subjectKey(subject: Subject): string {
  return `${subject.scope}:${subject.subjectId}`;
}
