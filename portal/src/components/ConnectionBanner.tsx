import { useSyncExternalStore } from 'react';
import type { SocketStatus } from '../api/client';

/** Shown while the live-event socket is down; its subscriptions resume when it is back. */
export function ConnectionBanner({ status }: { status: SocketStatus }) {
  const state = useSyncExternalStore(status.subscribe, status.get);
  if (state !== 'reconnecting') return null;
  return (
    <div role="status" className="banner">
      Connection lost: reconnecting… Live updates resume when the server answers again.
    </div>
  );
}
