import { describe, expect, it } from 'vitest';
import { columnProfiles, histogramOf } from './columnProfile';

describe('histogramOf', () => {
  it('reads the bins the API sends', () => {
    expect(histogramOf({ edges: [0, 1, 2], counts: [3, 4] })).toEqual({ edges: [0, 1, 2], counts: [3, 4] });
  });

  it('refuses what is not a well-formed histogram', () => {
    expect(histogramOf(undefined)).toBeNull();
    expect(histogramOf({ edges: [0, 1], counts: [1, 2] })).toBeNull(); // one edge too few
    expect(histogramOf({ edges: [0, 'x'], counts: [1] })).toBeNull();
    expect(histogramOf({ edges: [0], counts: [] })).toBeNull();
  });
});

describe('columnProfiles', () => {
  it('gives a number column its histogram and a text column none', () => {
    const [score, name] = columnProfiles(
      [
        { name: 'score', type: 'float' },
        { name: 'name', type: 'string' },
      ],
      { score: { histogram: { edges: [78, 84.75, 91.5], counts: [1, 1] } }, name: { topValues: [] } },
    );
    expect(score?.histogram?.counts).toEqual([1, 1]);
    expect(name?.histogram).toBeNull();
  });
});
