import { useRef } from 'react';
import { Link, NavLink, Outlet, useLocation } from 'react-router-dom';
import type { SocketStatus } from '../api/client';
import { useSession } from '../session/SessionContext';
import { ConnectionBanner } from './ConnectionBanner';
import { paths } from '../paths';
import { ErrorBoundary } from './ErrorBoundary';
import { useFocusOnNavigation } from './useFocusOnNavigation';

export function Layout({ status }: { status: SocketStatus }) {
  const { session, signOut, signOutError, state } = useSession();
  const { pathname } = useLocation();
  const main = useRef<HTMLElement>(null);
  useFocusOnNavigation(main, pathname);
  return (
    <>
      <header className="topbar">
        <Link className="brand" to={paths.projects()}>
          aiaas
        </Link>
        <nav aria-label="Main">
          <NavLink to={paths.projects()}>Projects</NavLink>
          <NavLink to={paths.tokens()}>API tokens</NavLink>
        </nav>
        <div className="account">
          <span className="muted">{session?.username}</span>
          <button type="button" onClick={() => void signOut()} disabled={state.status === 'signingOut'}>
            Sign out
          </button>
        </div>
      </header>
      <ConnectionBanner status={status} />
      {signOutError && (
        <p role="alert" className="error banner">
          Could not sign out: {signOutError}
        </p>
      )}
      <main ref={main}>
        {/* Keyed by the path: a page that failed does not stay failed on the next one, and a
            page opened for another job, dataset or model starts afresh instead of carrying the
            last one's state over. */}
        <ErrorBoundary key={pathname}>
          <Outlet />
        </ErrorBoundary>
      </main>
    </>
  );
}
