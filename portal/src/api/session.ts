// The REST session routes: sign in sets an httpOnly cookie the page never sees, and answers
// the CSRF token that must go with every later request. The token lives in memory only; after
// a reload `GET /v1/session` answers it again.
import { CSRF_HEADER, type FetchLike } from './csrfFetch';
import type { ApiErrorLike } from './errors';

export interface Session {
  username: string;
  isAdmin: boolean;
  csrfToken: string;
  expiresAt: string;
}

export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly apiError: ApiErrorLike,
  ) {
    super(`${apiError.message} (${apiError.code})`);
  }
}

async function errorOf(response: Response): Promise<ApiRequestError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page): described by its status below.
  }
  const error = (body as { error?: Partial<ApiErrorLike> } | null)?.error;
  const retryAfter = response.headers.get('Retry-After');
  const apiError: ApiErrorLike = {
    code: typeof error?.code === 'string' ? error.code : `HTTP_${response.status}`,
    message: typeof error?.message === 'string' ? error.message : response.statusText || 'request failed',
  };
  const retrySeconds = error?.retryAfterSeconds ?? (retryAfter !== null ? Number(retryAfter) : undefined);
  if (typeof retrySeconds === 'number' && Number.isFinite(retrySeconds)) apiError.retryAfterSeconds = retrySeconds;
  return new ApiRequestError(response.status, apiError);
}

function parseSession(body: unknown): Session {
  const value = body as Partial<Session>;
  if (typeof value.username !== 'string' || typeof value.csrfToken !== 'string') {
    throw new ApiRequestError(500, { code: 'BAD_RESPONSE', message: 'the server answered no session' });
  }
  return {
    username: value.username,
    isAdmin: value.isAdmin === true,
    csrfToken: value.csrfToken,
    expiresAt: typeof value.expiresAt === 'string' ? value.expiresAt : '',
  };
}

const SESSION_URL = '/v1/session';

/** The current session, or null when there is none (401). */
export async function fetchSession(fetcher: FetchLike): Promise<Session | null> {
  const response = await fetcher(SESSION_URL, { credentials: 'same-origin' });
  if (response.status === 401) return null;
  if (!response.ok) throw await errorOf(response);
  return parseSession(await response.json());
}

export async function signIn(fetcher: FetchLike, username: string, password: string): Promise<Session> {
  const response = await fetcher(SESSION_URL, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw await errorOf(response);
  return parseSession(await response.json());
}

/** Revokes the session on the server; a 401 means it had already ended, which is as good. */
export async function signOut(fetcher: FetchLike, csrfToken: string): Promise<void> {
  const response = await fetcher(SESSION_URL, {
    method: 'DELETE',
    credentials: 'same-origin',
    headers: { [CSRF_HEADER]: csrfToken },
  });
  if (!response.ok && response.status !== 401) throw await errorOf(response);
}

export { errorOf as restErrorOf };
