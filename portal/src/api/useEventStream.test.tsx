import { act, cleanup, renderHook, waitFor } from '@testing-library/react';
import { parse } from 'graphql';
import { StrictMode, type ReactNode } from 'react';
import { Client, Provider, subscriptionExchange, type TypedDocumentNode } from 'urql';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketStatus } from './client';
import { SocketStatusContext } from './socketStatusContext';
import { useEventStream } from './useEventStream';

interface Event {
  cursor: string;
  type: string;
}
interface Data {
  jobEvents: Event;
}
interface Variables {
  jobId: string;
  after: string | null;
}

// Parsed here rather than through codegen: a test document is not the portal's.
const JOB_EVENTS: TypedDocumentNode<Data, Variables> = parse(`
  subscription TestJobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) { cursor type }
  }
`);

/** Stands in for the socket behind urql: records what each subscription asked, lets the test
 * push events to the ones open, and knows which are still open. */
class FakeServer {
  readonly asked: unknown[] = [];
  readonly open = new Set<{ variables: unknown; next: (value: { data: Data }) => void }>();

  readonly client = new Client({
    url: '/graphql',
    exchanges: [
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => {
            const variables: unknown = request.variables;
            this.asked.push(variables);
            const each = { variables, next: (value: { data: Data }) => sink.next(value) };
            this.open.add(each);
            return { unsubscribe: () => this.open.delete(each) };
          },
        }),
      }),
    ],
  });

  /** Sends one event to every open subscription, as the server would to each. */
  send(cursor: string): void {
    act(() => {
      for (const each of this.open) each.next({ data: { jobEvents: { cursor, type: 'progress' } } });
    });
  }
}

function wrapperFor(server: FakeServer, status: SocketStatus) {
  return function Wrapper({ children }: { children: ReactNode }) {
    return (
      <StrictMode>
        <Provider value={server.client}>
          <SocketStatusContext.Provider value={status}>{children}</SocketStatusContext.Provider>
        </Provider>
      </StrictMode>
    );
  };
}

function watchJob(server: FakeServer, status: SocketStatus, jobId = 'job-1') {
  const delivered: string[] = [];
  let reconnections = 0;
  const hook = renderHook(
    ({ job }: { job: string }) =>
      useEventStream({
        query: JOB_EVENTS,
        variables: { jobId: job, after: null },
        pick: (data: Data) => data.jobEvents,
        cursor: { of: (event) => event.cursor, resume: (after) => ({ jobId: job, after }) },
        onEvent: (event) => delivered.push(event.cursor),
        onReconnected: () => {
          reconnections += 1;
        },
      }),
    { wrapper: wrapperFor(server, status), initialProps: { job: jobId } },
  );
  return { hook, delivered, reconnections: () => reconnections };
}

afterEach(cleanup);

describe('useEventStream', () => {
  it('delivers each event once, under StrictMode, dropping a replay of one already delivered', async () => {
    const server = new FakeServer();
    const { delivered } = watchJob(server, new SocketStatus());
    await waitFor(() => expect(server.open.size).toBe(1));
    server.send('100-0');
    server.send('100-1');
    server.send('100-0');
    server.send('101-0');
    expect(delivered).toEqual(['100-0', '100-1', '101-0']);
  });

  it('resumes from the last cursor when the socket reconnects, not from the start', async () => {
    const server = new FakeServer();
    const status = new SocketStatus();
    const { delivered, reconnections } = watchJob(server, status);
    act(() => status.set('connected'));
    await waitFor(() => expect(server.open.size).toBe(1));
    server.send('100-0');
    server.send('100-1');

    act(() => status.set('reconnecting'));
    // The stale subscription is dropped at once: graphql-ws would resend its first variables.
    await waitFor(() => expect([...server.open].map((each) => each.variables)).toEqual([{ jobId: 'job-1', after: '100-1' }]));
    expect(reconnections()).toBe(0);
    act(() => status.set('connected'));
    expect(reconnections()).toBe(1);

    // What the server sends after the cursor, and a late replay of the old one: delivered once.
    server.send('100-1');
    server.send('102-0');
    expect(delivered).toEqual(['100-0', '100-1', '102-0']);
    // Every subscription asked from the start (StrictMode mounts twice) but the resumed one.
    const resumed = server.asked.filter((each) => typeof each === 'object' && each !== null && 'after' in each && each.after !== null);
    expect(resumed).toEqual([{ jobId: 'job-1', after: '100-1' }]);
  });

  it('starts another job afresh, from its first event', async () => {
    const server = new FakeServer();
    const { hook, delivered } = watchJob(server, new SocketStatus());
    await waitFor(() => expect(server.open.size).toBe(1));
    server.send('500-0');
    hook.rerender({ job: 'job-2' });
    await waitFor(() => expect([...server.open].map((each) => each.variables)).toEqual([{ jobId: 'job-2', after: null }]));
    server.send('1-0');
    expect(delivered).toEqual(['500-0', '1-0']);
  });

  it('unsubscribes when the component unmounts', async () => {
    const server = new FakeServer();
    const status = new SocketStatus();
    const { hook, delivered } = watchJob(server, status);
    await waitFor(() => expect(server.open.size).toBe(1));
    hook.unmount();
    await waitFor(() => expect(server.open.size).toBe(0));
    // A reconnection after it is gone subscribes nothing.
    act(() => status.set('reconnecting'));
    expect(server.open.size).toBe(0);
    expect(delivered).toEqual([]);
  });

  it('resubscribes a stream without cursor as it was, and says when the socket is back', async () => {
    const server = new FakeServer();
    const status = new SocketStatus();
    let reconnections = 0;
    const delivered: string[] = [];
    renderHook(
      () =>
        useEventStream({
          query: JOB_EVENTS,
          variables: { jobId: 'job-1', after: null },
          pick: (data: Data) => data.jobEvents,
          onEvent: (event) => delivered.push(event.cursor),
          onReconnected: () => {
            reconnections += 1;
          },
        }),
      { wrapper: wrapperFor(server, status) },
    );
    act(() => status.set('connected'));
    await waitFor(() => expect(server.open.size).toBe(1));
    server.send('7-0');
    act(() => status.set('reconnecting'));
    act(() => status.set('connected'));
    await waitFor(() => expect([...server.open].map((each) => each.variables)).toEqual([{ jobId: 'job-1', after: null }]));
    expect(reconnections).toBe(1);
    server.send('7-0');
    // No cursor to compare: what the server sends again is the page's to merge.
    expect(delivered).toEqual(['7-0', '7-0']);
  });
});
