import { afterEach, describe, expect, it } from 'vitest';
import { createPortalClient, isCredentialsRefused, type PortalClient } from './client';

/** A stand-in for the browser's WebSocket, speaking graphql-ws's protocol as the server does:
 * it acknowledges `connection_init`, and then closes with the code the test says; every socket
 * the client opens is counted. */
class ScriptedServerSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static opened: ScriptedServerSocket[] = [];
  /** The close code (and reason) once acknowledged; null keeps the socket open. */
  static closeWith: { code: number; reason: string } | null = null;

  readyState = ScriptedServerSocket.CONNECTING;
  onopen: ((event: unknown) => void) | null = null;
  onclose: ((event: unknown) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocol: string,
  ) {
    ScriptedServerSocket.opened.push(this);
    setTimeout(() => {
      this.readyState = ScriptedServerSocket.OPEN;
      this.onopen?.({});
    }, 0);
  }

  send(data: string): void {
    const message = JSON.parse(data) as { type: string };
    if (message.type !== 'connection_init') return;
    setTimeout(() => {
      this.onmessage?.({ data: JSON.stringify({ type: 'connection_ack' }) });
      const close = ScriptedServerSocket.closeWith;
      if (close) setTimeout(() => this.close(close.code, close.reason), 10);
    }, 0);
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === ScriptedServerSocket.CLOSED) return;
    this.readyState = ScriptedServerSocket.CLOSED;
    this.onclose?.({ code, reason, wasClean: true });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let portal: PortalClient | null = null;

afterEach(() => {
  portal?.dispose();
  portal = null;
  ScriptedServerSocket.opened = [];
  ScriptedServerSocket.closeWith = null;
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
