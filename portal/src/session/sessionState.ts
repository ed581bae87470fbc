// Where the portal stands with the user's session; a pure reducer, so that its transitions are
// tested without a browser.
import type { Session } from '../api/session';

export type SessionState =
  | { status: 'restoring' }
  | { status: 'signedOut'; notice: string | null }
  | { status: 'signingIn' }
  /** `signOutError`: why the last sign-out failed, said until the next try. */
  | { status: 'signedIn'; session: Session; signOutError?: string }
  | { status: 'signingOut'; session: Session };

export type SessionAction =
  | { type: 'restored'; session: Session | null }
  | { type: 'signInStarted' }
  | { type: 'signInSucceeded'; session: Session }
  | { type: 'signInFailed'; error: string }
  | { type: 'signOutStarted' }
  | { type: 'signedOut' }
  | { type: 'signOutFailed'; error: string }
  | { type: 'expired' };

export const initialSessionState: SessionState = { status: 'restoring' };

export function sessionReducer(state: SessionState, action: SessionAction): SessionState {
  switch (action.type) {
    case 'restored':
      return action.session ? { status: 'signedIn', session: action.session } : { status: 'signedOut', notice: null };
    case 'signInStarted':
      return { status: 'signingIn' };
    case 'signInSucceeded':
      return { status: 'signedIn', session: action.session };
    case 'signInFailed':
      return { status: 'signedOut', notice: action.error };
    case 'signOutStarted':
      return state.status === 'signedIn' ? { status: 'signingOut', session: state.session } : state;
    case 'signedOut':
      return { status: 'signedOut', notice: null };
    case 'signOutFailed':
      // The session is still there: stay signed in and say why sign-out failed.
      return state.status === 'signingOut' ? { status: 'signedIn', session: state.session, signOutError: action.error } : state;
    case 'expired':
      return state.status === 'signedIn' || state.status === 'signingOut'
        ? { status: 'signedOut', notice: 'Your session has ended. Sign in again.' }
        : state;
  }
}

/** Why the last sign-out failed, while the portal is still signed in because of it. */
export function signOutError(state: SessionState): string | null {
  return state.status === 'signedIn' ? (state.signOutError ?? null) : null;
}

export function currentSession(state: SessionState): Session | null {
  return state.status === 'signedIn' || state.status === 'signingOut' ? state.session : null;
}
