// The subscription socket's status, for the components that must know when it was lost: a live
// stream resumes from its last cursor after a reconnection instead of from the start.
import { createContext, useContext } from 'react';
import type { SocketStatus } from './client';

export const SocketStatusContext = createContext<SocketStatus | null>(null);

/** Null outside the signed-in portal (a test that renders a page alone): nothing reconnects. */
export function useSocketStatus(): SocketStatus | null {
  return useContext(SocketStatusContext);
}
