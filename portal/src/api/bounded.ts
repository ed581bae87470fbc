// Lists that a live page grows for as long as it stays open (a timeline, the live audit rows)
// keep only their newest rows: a page left open for days must not grow without end. Each says
// how many it dropped, so the page can say where the older ones are.

export interface Bounded<T> {
  rows: readonly T[];
  /** How many older rows were dropped to stay within the bound. */
  dropped: number;
}

export function emptyBounded<T>(): Bounded<T> {
  return { rows: [], dropped: 0 };
}

/** Adds `row` after the others (oldest first), keeping the newest `max`. */
export function appendBounded<T>(list: Bounded<T>, row: T, max: number): Bounded<T> {
  const rows = [...list.rows, row];
  const over = Math.max(0, rows.length - max);
  return { rows: over ? rows.slice(over) : rows, dropped: list.dropped + over };
}

/** Adds `row` before the others (newest first), keeping the newest `max`. */
export function prependBounded<T>(list: Bounded<T>, row: T, max: number): Bounded<T> {
  const rows = [row, ...list.rows];
  const over = Math.max(0, rows.length - max);
  return { rows: over ? rows.slice(0, max) : rows, dropped: list.dropped + over };
}

/** `changes` with `key` set to `value`, holding only the keys `wanted` says are still needed
 * (the rows on the page), and at most `max` of them: the newest kept. */
export function recordBounded<T>(
  changes: ReadonlyMap<string, T>,
  key: string,
  value: T,
  wanted: (key: string) => boolean,
  max: number,
): Map<string, T> {
  const next = new Map<string, T>();
  for (const [known, each] of changes) if (known !== key && wanted(known)) next.set(known, each);
  next.set(key, value);
  // A Map iterates in insertion order: the first keys are the oldest changes.
  for (const known of next.keys()) {
    if (next.size <= max) break;
    next.delete(known);
  }
  return next;
}
