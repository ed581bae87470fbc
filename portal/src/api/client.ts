// The GraphQL client: queries and mutations over HTTP with the CSRF header, subscriptions over
// one graphql-ws socket that reconnects for as long as the page is open (a server restart or a
// network blip must not end a live chart) and resubscribes what was open.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { makeCsrfFetch, type FetchLike } from './csrfFetch';

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

/** The close code graphql-ws uses for its own lazy close once nothing is subscribed. */
const NORMAL_CLOSURE = 1000;

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
}): PortalClient {
  const status = new SocketStatus();
  const socket = createWsClient({
    url: socketUrl(window.location),
    connectionParams: { csrf: options.csrfToken },
    lazy: true,
    keepAlive: 10_000,
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: () => true,
    // Wait at most ~10 s between attempts, so a restarted server is found again soon.
    retryWait: async (retries) => {
      const delay = Math.min(10_000, 500 * 2 ** Math.min(retries, 5)) + Math.random() * 500;
      await new Promise((resolve) => setTimeout(resolve, delay));
    },
    on: {
      connected: () => status.set('connected'),
      closed: (event) => {
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
      cacheExchange,
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
