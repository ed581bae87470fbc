// Lists read a page at a time (the API's connections: `first`, `after`, `pageInfo`) and walk
// forward and back through them. Only one page is held at a time: a long list does not grow the
// page, and urql's cache answers a page walked back to.
import { useState } from 'react';

export interface PageInfoFields {
  hasNextPage: boolean;
  endCursor?: string | null;
}

/** The `after` cursor of each page walked through; the first page's is null. */
export type PageTrail = readonly (string | null)[];

export const FIRST_PAGE: PageTrail = [null];

export function currentCursor(trail: PageTrail): string | null {
  return trail[trail.length - 1] ?? null;
}

/** One page further, if the page shown says there is one. */
export function nextPage(trail: PageTrail, info: PageInfoFields | null | undefined): PageTrail {
  return info?.hasNextPage && info.endCursor ? [...trail, info.endCursor] : trail;
}

/** One page back; the first page stays. */
export function previousPage(trail: PageTrail): PageTrail {
  return trail.length > 1 ? trail.slice(0, -1) : trail;
}

export interface Pages {
  /** The `after` argument of the page to show. */
  after: string | null;
  /** 1 for the first page. */
  number: number;
  next(info: PageInfoFields | null | undefined): void;
  previous(): void;
  first(): void;
}

/** The page trail of one list; back to the first page whenever `listKey` (its filters, the
 * object it belongs to) changes. */
export function usePages(listKey: string): Pages {
  const [state, setState] = useState<{ key: string; trail: PageTrail }>({ key: listKey, trail: FIRST_PAGE });
  const trail = state.key === listKey ? state.trail : FIRST_PAGE;
  return {
    after: currentCursor(trail),
    number: trail.length,
    next: (info) => setState({ key: listKey, trail: nextPage(trail, info) }),
    previous: () => setState({ key: listKey, trail: previousPage(trail) }),
    first: () => setState({ key: listKey, trail: FIRST_PAGE }),
  };
}
