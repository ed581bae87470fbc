import { describe, expect, it } from 'vitest';
import { appendBounded, emptyBounded, prependBounded, recordBounded, type Bounded } from './bounded';

describe('bounded live lists', () => {
  it('keeps the newest rows of a timeline (oldest first) and counts those dropped', () => {
    let timeline: Bounded<number> = emptyBounded();
    for (let n = 1; n <= 10_000; n += 1) timeline = appendBounded(timeline, n, 200);
    expect(timeline.rows).toHaveLength(200);
    expect(timeline.rows[0]).toBe(9_801);
    expect(timeline.rows[199]).toBe(10_000);
    expect(timeline.dropped).toBe(9_800);
  });

  it('keeps the newest rows of a log (newest first) and counts those dropped', () => {
    let log: Bounded<string> = emptyBounded();
    for (let n = 1; n <= 500; n += 1) log = prependBounded(log, `event ${n}`, 200);
    expect(log.rows).toHaveLength(200);
    expect(log.rows[0]).toBe('event 500');
    expect(log.rows[199]).toBe('event 301');
    expect(log.dropped).toBe(300);
  });

  it('drops nothing under the bound', () => {
    const list = appendBounded(appendBounded(emptyBounded<number>(), 1, 3), 2, 3);
    expect(list).toEqual({ rows: [1, 2], dropped: 0 });
  });

  it('keeps the changes of the rows on the page only, at most as many as the bound', () => {
    const onPage = new Set(['a', 'b']);
    let changes: ReadonlyMap<string, number> = new Map();
    changes = recordBounded(changes, 'a', 1, (id) => onPage.has(id), 10);
    changes = recordBounded(changes, 'z', 2, (id) => onPage.has(id), 10);
    // The new job is kept (the page reads it next), then dropped once the page does not hold it.
    expect([...changes]).toEqual([
      ['a', 1],
      ['z', 2],
    ]);
    changes = recordBounded(changes, 'a', 3, (id) => onPage.has(id), 10);
    expect([...changes]).toEqual([['a', 3]]);

    let many: ReadonlyMap<string, number> = new Map();
    for (let n = 0; n < 1_000; n += 1) many = recordBounded(many, `job ${n}`, n, () => true, 100);
    expect(many.size).toBe(100);
    expect(many.get('job 999')).toBe(999);
    expect(many.has('job 899')).toBe(false);
  });
});
