import { Link, NavLink, Outlet, useLocation } from 'react-router-dom';
import type { SocketStatus } from '../api/client';
import { useSession } from '../session/SessionContext';
import { ConnectionBanner } from './ConnectionBanner';
import { ErrorBoundary } from './ErrorBoundary';

export function Layout({ status }: { status: SocketStatus }) {
  const { session, signOut, signOutError, state } = useSession();
  const { pathname } = useLocation();
  return (
    <>
      <header className="topbar">
        <Link className="brand" to="/projects">
          aiaas
        </Link>
        <nav aria-label="Main">
          <NavLink to="/projects">Projects</NavLink>
          <NavLink to="/tokens">API tokens</NavLink>
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
      <main>
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
