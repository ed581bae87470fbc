// The hook over the portal's real client (urql, graphql-ws and its retries), against a socket
// that speaks graphql-ws's protocol as the server does: after the connection drops, the stream
// is asked again once, from its last cursor, and nothing is delivered twice.
import { act, cleanup, renderHook, waitFor } from '@testing-library/react';
import { parse } from 'graphql';
import { StrictMode, type ReactNode } from 'react';
import { Provider, type TypedDocumentNode } from 'urql';
import { afterEach, describe, expect, it } from 'vitest';
import { createPortalClient, type PortalClient } from './client';
import { ScriptedServerSocket } from './scriptedServerSocket';
import { SocketStatusContext } from './socketStatusContext';
import { useEventStream } from './useEventStream';

interface Data {
  jobEvents: { cursor: string };
}

const JOB_EVENTS: TypedDocumentNode<Data, { jobId: string; after: string | null }> = parse(`
  subscription TestJobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) { cursor }
  }
`);

let portal: PortalClient | null = null;

afterEach(() => {
  cleanup();
  portal?.dispose();
  portal = null;
  ScriptedServerSocket.reset();
});

describe('a live stream over the real client', () => {
  it('resumes from its last cursor after the socket drops, asking once', async () => {
    const made = createPortalClient({ csrfToken: 'csrf-1', onUnauthorized: () => undefined, webSocketImpl: ScriptedServerSocket });
    portal = made;
    const delivered: string[] = [];
    function Wrapper({ children }: { children: ReactNode }) {
      return (
        <StrictMode>
          <Provider value={made.client}>
            <SocketStatusContext.Provider value={made.status}>{children}</SocketStatusContext.Provider>
          </Provider>
        </StrictMode>
      );
    }
    renderHook(
      () =>
        useEventStream({
          query: JOB_EVENTS,
          variables: { jobId: 'job-1', after: null },
          pick: (data: Data) => data.jobEvents,
          cursor: { of: (event) => event.cursor, resume: (after) => ({ jobId: 'job-1', after }) },
          onEvent: (event) => delivered.push(event.cursor),
        }),
      { wrapper: Wrapper },
    );

    await waitFor(() => expect(ScriptedServerSocket.opened[0]?.subscribed).toHaveLength(1));
    const first = ScriptedServerSocket.opened[0];
    act(() => {
      first?.emit({ jobEvents: { cursor: '100-0' } });
      first?.emit({ jobEvents: { cursor: '100-1' } });
    });
    expect(delivered).toEqual(['100-0', '100-1']);

    act(() => first?.close(1006, 'server gone'));
    expect(made.status.get()).toBe('reconnecting');
    // graphql-ws waits up to a second before its first retry.
    await waitFor(() => expect(ScriptedServerSocket.opened[1]?.subscribed).toHaveLength(1), { timeout: 3_000 });
    const second = ScriptedServerSocket.opened[1];
    // Only the resumed subscription: graphql-ws did not resend the first one from the start.
    expect(second?.subscribed.map((each) => each.variables)).toEqual([{ jobId: 'job-1', after: '100-1' }]);
    act(() => second?.emit({ jobEvents: { cursor: '101-0' } }));
    expect(delivered).toEqual(['100-0', '100-1', '101-0']);
  });
});
