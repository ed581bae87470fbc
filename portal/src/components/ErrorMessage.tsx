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

/** What shows while a query has neither data nor an error yet. */
export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}
