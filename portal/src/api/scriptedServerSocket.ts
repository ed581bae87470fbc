// For the tests of the socket (not part of the bundle: only tests import it). A stand-in for
// the browser's WebSocket, speaking graphql-ws's protocol as the server does: it acknowledges
// `connection_init` (and then closes with the code a test says, if one does), records each
// subscription, and sends the events a test says; every socket the client opens is counted.

export interface ScriptedSubscription {
  id: string;
  variables: unknown;
}

export class ScriptedServerSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static opened: ScriptedServerSocket[] = [];
  /** The close code (and reason) once acknowledged; null keeps the socket open. */
  static closeWith: { code: number; reason: string } | null = null;

  /** Forgets the sockets of the last test and its closing code. */
  static reset(): void {
    ScriptedServerSocket.opened = [];
    ScriptedServerSocket.closeWith = null;
  }

  readyState = ScriptedServerSocket.CONNECTING;
  /** The subscriptions open on this socket, in the order they came. */
  readonly subscribed: ScriptedSubscription[] = [];
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
    const message = JSON.parse(data) as { type: string; id?: string; payload?: { variables?: unknown } };
    if (message.type === 'connection_init') {
      setTimeout(() => {
        this.onmessage?.({ data: JSON.stringify({ type: 'connection_ack' }) });
        const close = ScriptedServerSocket.closeWith;
        if (close) setTimeout(() => this.close(close.code, close.reason), 10);
      }, 0);
    } else if (message.type === 'subscribe' && message.id) {
      this.subscribed.push({ id: message.id, variables: message.payload?.variables });
    } else if (message.type === 'complete') {
      const gone = this.subscribed.findIndex((each) => each.id === message.id);
      if (gone >= 0) this.subscribed.splice(gone, 1);
    }
  }

  /** One result to every subscription open on this socket. */
  emit(data: unknown): void {
    for (const each of this.subscribed) {
      this.onmessage?.({ data: JSON.stringify({ id: each.id, type: 'next', payload: { data } }) });
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === ScriptedServerSocket.CLOSED) return;
    this.readyState = ScriptedServerSocket.CLOSED;
    this.onclose?.({ code, reason, wasClean: code === 1000 });
  }
}
