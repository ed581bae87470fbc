import { afterEach, describe, expect, it } from 'vitest';
import { createPortalClient, isCredentialsRefused, type PortalClient } from './client';
import { ScriptedServerSocket } from './scriptedServerSocket';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let portal: PortalClient | null = null;

afterEach(() => {
  portal?.dispose();
  portal = null;
  ScriptedServerSocket.reset();
});

function subscribed(onUnauthorized: () => void): { errors: unknown[] } {
  portal = createPortalClient({ csrfToken: 'csrf-1', onUnauthorized, webSocketImpl: ScriptedServerSocket });
  const seen = { errors: [] as unknown[] };
  portal.socket.subscribe(
    { query: 'subscription { jobEvents(jobId: "x") { cursor } }' },
    { next: () => undefined, error: (error) => seen.errors.push(error), complete: () => undefined },
  );
  return seen;
}

describe('the subscription socket', () => {
  it('ends the session and stops retrying when the server closes it with 4403', async () => {
    ScriptedServerSocket.closeWith = { code: 4403, reason: 'session revoked' };
    let unauthorized = 0;
    const seen = subscribed(() => (unauthorized += 1));
    // Longer than the first retry's wait (at most 1 s): a retry would have opened a second one.
    await sleep(1600);
    expect(ScriptedServerSocket.opened).toHaveLength(1);
    expect(unauthorized).toBe(1);
    expect(portal?.status.get()).toBe('idle');
    expect(seen.errors).toHaveLength(1);
  });

  it('ends the session on graphql-ws own 4401 too', async () => {
    ScriptedServerSocket.closeWith = { code: 4401, reason: 'Unauthorized' };
    let unauthorized = 0;
    subscribed(() => (unauthorized += 1));
    await sleep(1600);
    expect(ScriptedServerSocket.opened).toHaveLength(1);
    expect(unauthorized).toBe(1);
  });

  it('keeps reconnecting after any other close, showing "reconnecting"', async () => {
    ScriptedServerSocket.closeWith = { code: 1012, reason: 'service restart' };
    let unauthorized = 0;
    const seen = subscribed(() => (unauthorized += 1));
    await sleep(50);
    expect(portal?.status.get()).toBe('reconnecting');
    await sleep(1600);
    expect(ScriptedServerSocket.opened.length).toBeGreaterThan(1);
    expect(unauthorized).toBe(0);
    expect(seen.errors).toHaveLength(0);
  });

  it('tells credential refusals from other closes', () => {
    expect(isCredentialsRefused({ code: 4403, reason: 'API token revoked' })).toBe(true);
    expect(isCredentialsRefused({ code: 4401, reason: '' })).toBe(true);
    expect(isCredentialsRefused({ code: 1006, reason: '' })).toBe(false);
    expect(isCredentialsRefused(new Error('network'))).toBe(false);
    expect(isCredentialsRefused(undefined)).toBe(false);
  });
});
