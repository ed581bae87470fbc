import { act, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup } from '@testing-library/react';
import type { FetchLike } from '../api/csrfFetch';
import { SessionProvider, useSession } from './SessionContext';
import { sessionReducer, signOutError } from './sessionState';

const ALICE = { username: 'alice', isAdmin: false, csrfToken: 'csrf-1', expiresAt: '2030-01-01T00:00:00+00:00' };

/** A fake of the session routes: who is signed in lives in `cookie`, as the server's would. */
function fakeServer(options: { signedIn?: boolean; password?: string } = {}) {
  const state = { cookie: options.signedIn === true, requests: [] as Array<{ method: string; csrf: string | null; body: unknown }> };
  const fetch: FetchLike = async (_input, init = {}) => {
    const method = init.method ?? 'GET';
    const headers = new Headers(init.headers);
    const body = typeof init.body === 'string' ? (JSON.parse(init.body) as unknown) : null;
    state.requests.push({ method, csrf: headers.get('x-aiaas-csrf'), body });
    const json = (value: unknown, status = 200) => new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json' } });
    if (method === 'GET') return state.cookie ? json(ALICE) : json({ error: { code: 'UNAUTHENTICATED', message: 'sign in' } }, 401);
    if (method === 'POST') {
      const { password } = body as { password: string };
      if (password !== (options.password ?? 'right')) {
        return json({ error: { code: 'LOGIN_FAILED', message: 'wrong username or password' } }, 401);
      }
      state.cookie = true;
      return json(ALICE);
    }
    if (method === 'DELETE') {
      if (headers.get('x-aiaas-csrf') !== ALICE.csrfToken) return json({ error: { code: 'CSRF', message: 'csrf header missing' } }, 403);
      state.cookie = false;
      return new Response(null, { status: 204 });
    }
    return json({}, 405);
  };
  return { state, fetch };
}

let api: ReturnType<typeof useSession> | null = null;

function Probe() {
  api = useSession();
  return (
    <p>
      {api.state.status}
      {api.session ? ` as ${api.session.username}` : ''}
      {api.state.status === 'signedOut' && api.state.notice ? ` notice: ${api.state.notice}` : ''}
    </p>
  );
}

afterEach(() => {
  cleanup();
  api = null;
});

describe('session state', () => {
  it('restores the session after a reload from GET /v1/session', async () => {
    const server = fakeServer({ signedIn: true });
    render(
      <SessionProvider fetch={server.fetch}>
        <Probe />
      </SessionProvider>,
    );
    expect(screen.getByText('restoring')).toBeTruthy();
    await screen.findByText('signedIn as alice');
    expect(api?.session?.csrfToken).toBe('csrf-1');
  });

  it('signs in, then signs out with the CSRF header, and is signed out after', async () => {
    const server = fakeServer();
    render(
      <SessionProvider fetch={server.fetch}>
        <Probe />
      </SessionProvider>,
    );
    await screen.findByText('signedOut');
    await act(() => api!.signIn('alice', 'right'));
    await screen.findByText('signedIn as alice');
    expect(server.state.requests[1]).toEqual({ method: 'POST', csrf: null, body: { username: 'alice', password: 'right' } });

    await act(() => api!.signOut());
    await screen.findByText('signedOut');
    const signOut = server.state.requests[2];
    expect(signOut?.method).toBe('DELETE');
    expect(signOut?.csrf).toBe('csrf-1');
    expect(server.state.cookie).toBe(false);
  });

  it('stays signed out with the API’s reason after wrong credentials', async () => {
    const server = fakeServer();
    render(
      <SessionProvider fetch={server.fetch}>
        <Probe />
      </SessionProvider>,
    );
    await screen.findByText('signedOut');
    await act(() => api!.signIn('alice', 'wrong'));
    await waitFor(() => expect(screen.getByText(/notice: wrong username or password \(LOGIN_FAILED\)/)).toBeTruthy());
    expect(api?.session).toBeNull();
  });

  it('ends the session when the API says it expired', async () => {
    const server = fakeServer({ signedIn: true });
    render(
      <SessionProvider fetch={server.fetch}>
        <Probe />
      </SessionProvider>,
    );
    await screen.findByText('signedIn as alice');
    act(() => api!.expire());
    await screen.findByText(/signedOut notice: Your session has ended/);
  });
});

describe('sessionReducer', () => {
  it('keeps the session when sign-out fails', () => {
    const signingOut = sessionReducer({ status: 'signedIn', session: ALICE }, { type: 'signOutStarted' });
    expect(signingOut).toEqual({ status: 'signingOut', session: ALICE });
    const failed = sessionReducer(signingOut, { type: 'signOutFailed', error: 'offline' });
    expect(failed).toEqual({ status: 'signedIn', session: ALICE, signOutError: 'offline' });
    expect(signOutError(failed)).toBe('offline');
    // Said until the next try, which starts without it.
    expect(signOutError(sessionReducer(failed, { type: 'signOutStarted' }))).toBeNull();
  });

  it('ignores an expiry while signed out', () => {
    const state = { status: 'signedOut' as const, notice: null };
    expect(sessionReducer(state, { type: 'expired' })).toBe(state);
  });
});
