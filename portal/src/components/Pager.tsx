import type { PageInfoFields, Pages } from '../api/pagination';

/** "Previous page · Page N · Next page" under a list; nothing when it all fits on one page. */
export function Pager({ what, pages, info }: { what: string; pages: Pages; info: PageInfoFields | null | undefined }) {
  const hasNext = Boolean(info?.hasNextPage && info.endCursor);
  if (pages.number === 1 && !hasNext) return null;
  return (
    <nav className="row pager" aria-label={`Pages of ${what}`}>
      <button type="button" disabled={pages.number === 1} onClick={() => pages.previous()}>
        Previous page
      </button>
      <span aria-live="polite">Page {pages.number}</span>
      <button type="button" disabled={!hasNext} onClick={() => pages.next(info)}>
        Next page
      </button>
    </nav>
  );
}
