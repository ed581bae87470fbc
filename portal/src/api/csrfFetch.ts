// Every request but the session's own sign-in carries the CSRF header: the API accepts the
// httpOnly session cookie only together with it, so a page of another site that makes the
// browser send the cookie cannot act for the user.

export const CSRF_HEADER = 'x-aiaas-csrf';

export type FetchLike = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

export interface CsrfFetchOptions {
  /** The token of the current session, held in memory only; null when signed out. */
  csrfToken: () => string | null;
  /** Told when the API answers 401: the session ended (expired, revoked, signed out elsewhere). */
  onUnauthorized?: () => void;
  fetch?: FetchLike;
}

export function makeCsrfFetch(options: CsrfFetchOptions): FetchLike {
  return async (input, init = {}) => {
    const base = options.fetch ?? globalThis.fetch.bind(globalThis);
    const headers = new Headers(init.headers);
    const token = options.csrfToken();
    // Only to the page's own origin: the token must never leave with a request to another site.
    if (token !== null && sameOrigin(input)) headers.set(CSRF_HEADER, token);
    const response = await base(input, { ...init, headers, credentials: 'same-origin' });
    if (response.status === 401) options.onUnauthorized?.();
    return response;
  };
}

function sameOrigin(input: RequestInfo | URL): boolean {
  const target = input instanceof Request ? input.url : String(input);
  return new URL(target, globalThis.location.href).origin === globalThis.location.origin;
}
