import { useEffect } from 'react';

const PORTAL = 'aiaas';

/** The browser tab's title, and what a screen reader says on arriving: the page, then where it
 * is, then the portal ("Models · fraud · aiaas"). Parts not known yet are left out. */
export function pageTitle(...parts: ReadonlyArray<string | null | undefined>): string {
  return [...parts.filter((part): part is string => Boolean(part)), PORTAL].join(' · ');
}

/** Sets document.title while the page is shown. */
export function usePageTitle(...parts: ReadonlyArray<string | null | undefined>): void {
  const title = pageTitle(...parts);
  useEffect(() => {
    document.title = title;
  }, [title]);
}
