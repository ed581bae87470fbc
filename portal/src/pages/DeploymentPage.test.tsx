// The deployment page reads the deployment again when its events say it changed: once per burst
// of events (its history replayed on opening, a rollout's steps), not once per event.
import { act, cleanup, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { Client, makeResult, Provider, subscriptionExchange, type Exchange } from 'urql';
import { filter, map, merge, pipe, share, tap } from 'wonka';
import { afterEach, describe, expect, it } from 'vitest';
import type { FetchLike } from '../api/csrfFetch';
import { SessionProvider } from '../session/SessionContext';
import { DeploymentPage } from './DeploymentPage';

const VERSION = { id: 'v1', number: 1, signature: null, datasetVersion: null };
const DEPLOYMENT = {
  project: {
    id: 'p1',
    viewerRole: 'VIEWER',
    isArchived: false,
    deployment: {
      id: 'd1',
      name: 'payments',
      state: 'UPDATING',
      reason: null,
      runtime: 'jax',
      sourceAlias: null,
      v2ModelName: 'payments',
      maxBatchSize: 8,
      maxWaitMs: 5,
      driftThreshold: 0.2,
      generation: 3,
      createdAt: '2026-01-01T00:00:00Z',
      readyAt: null,
      traffic: { stablePercent: 100, canaryPercent: 0, stableVersion: VERSION, canaryVersion: null, shadowVersion: null },
      pendingTraffic: null,
      previousStableVersion: null,
      model: { id: 'm1', name: 'payments', versions: { nodes: [{ id: 'v1', number: 1 }] } },
      drift: [],
    },
  },
};

const ALICE = { username: 'alice', isAdmin: false, csrfToken: 'csrf-1', expiresAt: '2030-01-01T00:00:00+00:00' };
const signedIn: FetchLike = async () => new Response(JSON.stringify(ALICE), { status: 200, headers: { 'content-type': 'application/json' } });

/** Answers every query with the deployment, counting them; subscriptions go to `send`. */
function fakeApi() {
  const state = { queries: 0, send: null as ((cursor: string) => void) | null };
  const answerQueries: Exchange = ({ forward }) => (operations$) => {
    const shared$ = share(operations$);
    return merge([
      pipe(
        shared$,
        filter((operation) => operation.kind === 'query'),
        tap(() => {
          state.queries += 1;
        }),
        map((operation) => makeResult(operation, { data: DEPLOYMENT })),
      ),
      forward(pipe(shared$, filter((operation) => operation.kind !== 'query'))),
    ]);
  };
  const client = new Client({
    url: '/graphql',
    exchanges: [
      answerQueries,
      subscriptionExchange({
        forwardSubscription: () => ({
          subscribe: (sink) => {
            state.send = (cursor) =>
              sink.next({ data: { deploymentEvents: { cursor, type: 'state', state: 'UPDATING', reason: null, generation: 3, traffic: null, at: null } } });
            return { unsubscribe: () => (state.send = null) };
          },
        }),
      }),
    ],
  });
  return { state, client };
}

afterEach(cleanup);

describe('the deployment page', () => {
  it('reads the deployment again once for a burst of events', async () => {
    const api = fakeApi();
    render(
      <SessionProvider fetch={signedIn}>
        <Provider value={api.client}>
          <MemoryRouter initialEntries={['/projects/fraud/deployments/payments']}>
            <Routes>
              <Route path="projects/:slug/deployments/:name" element={<DeploymentPage />} />
            </Routes>
          </MemoryRouter>
        </Provider>
      </SessionProvider>,
    );
    await screen.findByRole('heading', { level: 1, name: /Deployment: payments/ });
    await waitFor(() => expect(api.state.send).not.toBeNull());
    const before = api.state.queries;

    // Each event in a task of its own, as each comes in its own socket message.
    for (let sequence = 0; sequence < 20; sequence += 1) {
      await act(async () => {
        api.state.send?.(`1700000000000-${sequence}`);
        await new Promise((resolve) => setTimeout(resolve, 0));
      });
    }
    expect(screen.getByRole('list', { name: 'Deployment timeline' }).children).toHaveLength(21);
    await waitFor(() => expect(api.state.queries).toBe(before + 1));
    // And no more once the burst is over.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(api.state.queries).toBe(before + 1);
  });
});
