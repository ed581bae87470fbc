import { act, cleanup, fireEvent, render, renderHook, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { Pager } from '../components/Pager';
import { currentCursor, FIRST_PAGE, nextPage, previousPage, usePages } from './pagination';

afterEach(cleanup);

describe('page trails', () => {
  it('walks forward by the end cursor of the page shown, and back', () => {
    const second = nextPage(FIRST_PAGE, { hasNextPage: true, endCursor: 'c1' });
    const third = nextPage(second, { hasNextPage: true, endCursor: 'c2' });
    expect(currentCursor(FIRST_PAGE)).toBeNull();
    expect(currentCursor(third)).toBe('c2');
    expect(currentCursor(previousPage(third))).toBe('c1');
    expect(previousPage(previousPage(previousPage(third)))).toEqual([null]);
  });

  it('stays on the last page', () => {
    expect(nextPage(FIRST_PAGE, { hasNextPage: false, endCursor: 'c1' })).toBe(FIRST_PAGE);
    expect(nextPage(FIRST_PAGE, { hasNextPage: true, endCursor: null })).toBe(FIRST_PAGE);
    expect(nextPage(FIRST_PAGE, null)).toBe(FIRST_PAGE);
  });

  it('goes back to the first page when the list changes (other filters, another object)', () => {
    const hook = renderHook(({ list }: { list: string }) => usePages(list), { initialProps: { list: 'a' } });
    act(() => hook.result.current.next({ hasNextPage: true, endCursor: 'c1' }));
    expect(hook.result.current).toMatchObject({ after: 'c1', number: 2 });
    hook.rerender({ list: 'b' });
    expect(hook.result.current).toMatchObject({ after: null, number: 1 });
  });
});

describe('the pager', () => {
  function Harness({ hasNextPage }: { hasNextPage: boolean }) {
    const pages = usePages('list');
    return (
      <>
        <p>after {pages.after ?? 'none'}</p>
        <Pager what="the jobs" pages={pages} info={{ hasNextPage, endCursor: `after-page-${pages.number}` }} />
      </>
    );
  }

  it('is not shown when the list fits on one page', () => {
    render(<Harness hasNextPage={false} />);
    expect(screen.queryByRole('navigation')).toBeNull();
  });

  it('asks for the next page by its cursor and comes back', () => {
    render(<Harness hasNextPage />);
    const previous = screen.getByRole('button', { name: 'Previous page' });
    expect(previous).toHaveProperty('disabled', true);
    fireEvent.click(screen.getByRole('button', { name: 'Next page' }));
    expect(screen.getByText('after after-page-1')).toBeTruthy();
    expect(screen.getByText('Page 2')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Previous page' }));
    expect(screen.getByText('after none')).toBeTruthy();
  });
});
