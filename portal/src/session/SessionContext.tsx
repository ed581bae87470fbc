import { createContext, useCallback, useContext, useEffect, useMemo, useReducer, useRef, type ReactNode } from 'react';
import type { FetchLike } from '../api/csrfFetch';
import { describeError } from '../api/errors';
import { fetchSession, signIn as signInRequest, signOut as signOutRequest, type Session } from '../api/session';
import { currentSession, initialSessionState, sessionReducer, signOutError, type SessionState } from './sessionState';

export interface SessionApi {
  state: SessionState;
  session: Session | null;
  signOutError: string | null;
  signIn(username: string, password: string): Promise<void>;
  signOut(): Promise<void>;
  /** The API answered 401: the session is gone. */
  expire(): void;
  fetch: FetchLike;
}

const SessionContext = createContext<SessionApi | null>(null);

export function SessionProvider({ children, fetch: givenFetch }: { children: ReactNode; fetch?: FetchLike }) {
  const fetcher = useMemo<FetchLike>(() => givenFetch ?? ((input, init) => globalThis.fetch(input, init)), [givenFetch]);
  const [state, dispatch] = useReducer(sessionReducer, initialSessionState);
  const stateRef = useRef(state);
  stateRef.current = state;

  useEffect(() => {
    let live = true;
    fetchSession(fetcher)
      .then((session) => live && dispatch({ type: 'restored', session }))
      .catch(() => live && dispatch({ type: 'restored', session: null }));
    return () => {
      live = false;
    };
  }, [fetcher]);

  const signIn = useCallback(
    async (username: string, password: string) => {
      dispatch({ type: 'signInStarted' });
      try {
        dispatch({ type: 'signInSucceeded', session: await signInRequest(fetcher, username, password) });
      } catch (error) {
        dispatch({ type: 'signInFailed', error: describeError(error) });
      }
    },
    [fetcher],
  );

  const signOut = useCallback(async () => {
    const session = currentSession(stateRef.current);
    if (!session) return;
    dispatch({ type: 'signOutStarted' });
    try {
      await signOutRequest(fetcher, session.csrfToken);
      dispatch({ type: 'signedOut' });
    } catch (error) {
      dispatch({ type: 'signOutFailed', error: describeError(error) });
    }
  }, [fetcher]);

  const expire = useCallback(() => dispatch({ type: 'expired' }), []);

  const api = useMemo<SessionApi>(
    () => ({ state, session: currentSession(state), signOutError: signOutError(state), signIn, signOut, expire, fetch: fetcher }),
    [state, signIn, signOut, expire, fetcher],
  );
  return <SessionContext.Provider value={api}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionApi {
  const api = useContext(SessionContext);
  if (!api) throw new Error('useSession outside SessionProvider');
  return api;
}
