// The GraphQL client: queries and mutations over HTTP with the CSRF header, subscriptions over
// one graphql-ws socket that reconnects for as long as the page is open (a server restart or a
// network blip must not end a live chart) and resubscribes what was open; except when the server
// refused the socket's credentials: the session has ended, and the portal goes back to sign-in.
import { Client, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { makeCsrfFetch, type FetchLike } from './csrfFetch';
import { boundedCacheExchange } from './boundedCacheExchange';

export type SocketState = 'idle' | 'connected' | 'reconnecting';

/** Whether the subscription socket is down, for the "reconnecting…" banner. */
export class SocketStatus {
  private state: SocketState = 'idle';
  private readonly listeners = new Set<() => void>();

  get = (): SocketState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  set(state: SocketState): void {
    if (state === this.state) return;
    this.state = state;
    this.listeners.forEach((listener) => listener());
  }
}

/** ws: or wss: to the page's own origin. */
export function socketUrl(location: Pick<Location, 'protocol' | 'host'>): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/graphql`;
}

/** The query results urql keeps for pages walked back to: the latest ones only, so that a
 * session of days (every job opened, every metric history) does not grow without end. */
export const MAX_CACHED_RESULTS = 200;

/** The close code graphql-ws uses for its own lazy close once nothing is subscribed. */
const NORMAL_CLOSURE = 1000;

/** Close codes of a socket refused for its credentials: 4403, the server's for a session that
 * was revoked or expired (on an open socket or at the handshake), and 4401, graphql-ws's own
 * "Unauthorized". No retry can succeed with the same cookie, so the session is treated as
 * ended, as a 401 over HTTP is. */
const CREDENTIALS_REFUSED = new Set([4401, 4403]);

export function isCredentialsRefused(event: unknown): boolean {
  const code = (event as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' && CREDENTIALS_REFUSED.has(code);
}

export interface PortalClient {
  client: Client;
  socket: WsClient;
  status: SocketStatus;
  dispose(): void;
}

export function createPortalClient(options: {
  csrfToken: string;
  onUnauthorized: () => void;
  fetch?: FetchLike;
  /** The WebSocket class; the browser's unless a test gives another. */
  webSocketImpl?: unknown;
}): PortalClient {
  const status = new SocketStatus();
  let refused = false;
  const socket = createWsClient({
    url: socketUrl(window.location),
    webSocketImpl: options.webSocketImpl,
    connectionParams: { csrf: options.csrfToken },
    lazy: true,
    keepAlive: 10_000,
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: (event) => !isCredentialsRefused(event),
    // Wait at most ~10 s between attempts, so a restarted server is found again soon.
    retryWait: async (retries) => {
      const delay = Math.min(10_000, 500 * 2 ** Math.min(retries, 5)) + Math.random() * 500;
      await new Promise((resolve) => setTimeout(resolve, delay));
    },
    on: {
      connected: () => status.set('connected'),
      closed: (event) => {
        if (isCredentialsRefused(event)) {
          // Not "reconnecting": nothing will reconnect. Sign-in is told once.
          status.set('idle');
          if (!refused) {
            refused = true;
            options.onUnauthorized();
          }
          return;
        }
        const code = (event as { code?: number } | undefined)?.code;
        status.set(code === NORMAL_CLOSURE ? 'idle' : 'reconnecting');
      },
    },
  });
  const client = new Client({
    url: '/graphql',
    fetch: makeCsrfFetch({ csrfToken: () => options.csrfToken, onUnauthorized: options.onUnauthorized, fetch: options.fetch }),
    fetchOptions: { credentials: 'same-origin' },
    requestPolicy: 'cache-and-network',
    exchanges: [
      boundedCacheExchange(MAX_CACHED_RESULTS),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? '' };
          return {
            subscribe(sink) {
              const unsubscribe = socket.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return {
    client,
    socket,
    status,
    dispose: () => {
      void socket.dispose();
    },
  };
}
