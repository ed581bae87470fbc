import { describe, expect, it } from 'vitest';
import { isAfter } from './streamCursor';

describe('stream cursors', () => {
  it('orders by milliseconds, then by sequence, as numbers', () => {
    expect(isAfter('1712345-0', null)).toBe(true);
    expect(isAfter('1712346-0', '1712345-9')).toBe(true);
    expect(isAfter('1712345-10', '1712345-9')).toBe(true);
    expect(isAfter('1712345-9', '1712345-9')).toBe(false);
    expect(isAfter('1712345-2', '1712345-9')).toBe(false);
    expect(isAfter('999-0', '1000-0')).toBe(false);
  });

  it('takes a cursor that is not a stream id as new', () => {
    expect(isAfter('odd', '1712345-0')).toBe(true);
  });
});
