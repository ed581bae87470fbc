// The cursors of `jobEvents` are Redis stream ids, "<milliseconds>-<sequence>", ordered by both
// parts. A resubscription after a lost connection replays what the page already has; holding
// only the last cursor seen (not a set of every one) drops those in constant memory, however
// long the page stays open.

function parts(cursor: string): [number, number] | null {
  const match = /^(\d+)-(\d+)$/.exec(cursor);
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** Whether `cursor` comes after `last` (null: nothing seen yet). A cursor that is not a stream id
 * is taken as new: the page shows it rather than hide it. */
export function isAfter(cursor: string, last: string | null): boolean {
  if (last === null) return true;
  const next = parts(cursor);
  const seen = parts(last);
  if (!next || !seen) return true;
  return next[0] > seen[0] || (next[0] === seen[0] && next[1] > seen[1]);
}
