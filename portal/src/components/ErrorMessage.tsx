import { describeError } from '../api/errors';

/** An API or network error in plain words, announced to screen readers. */
export function ErrorMessage({ error }: { error: unknown }) {
  if (error === null || error === undefined) return null;
  return (
    <p role="alert" className="error">
      {describeError(error)}
    </p>
  );
}

/** What shows while a query has neither data nor an error yet. Not a live region: one that
 * comes and goes with its text is not announced anyway, and once the page is in, focus moves
 * to its heading, which is (useFocusOnNavigation). */
export function Loading({ what }: { what: string }) {
  return (
    <p className="muted">
      Loading {what}…
    </p>
  );
}
