// One way for every live stream of the portal (a job's events, a deployment's, a project's audit
// events and job changes): subscribed in an effect, each event handed once to a callback outside
// any state updater (StrictMode runs those twice), and ended with the component.
//
// graphql-ws resubscribes by itself after a lost connection, but with the variables it was first
// given: a stream that takes a cursor would replay everything from the start. So when the socket
// is lost the hook drops its subscription and subscribes anew from the last cursor it delivered;
// graphql-ws sends that once the socket is back. A stream without a cursor cannot resume: the
// page is told when the socket is back, to read again what it may have missed.
import { useEffect, useRef, useState } from 'react';
import { useClient, type AnyVariables, type CombinedError, type TypedDocumentNode } from 'urql';
import { isAfter } from '../training/streamCursor';
import { useSocketStatus } from './socketStatusContext';

export interface StreamCursor<Event, Variables> {
  /** The event's cursor: ordered stream ids ("<ms>-<seq>"), see training/streamCursor. */
  of: (event: Event) => string;
  /** The variables that ask for the events after `after`. */
  resume: (after: string) => Variables;
}

export interface EventStreamOptions<Data, Variables extends AnyVariables, Event> {
  query: TypedDocumentNode<Data, Variables>;
  variables: Variables;
  pause?: boolean;
  /** The event in one result. */
  pick: (data: Data) => Event;
  onEvent: (event: Event) => void;
  /** For a stream that takes a cursor: it resumes from the last one after a reconnection. */
  cursor?: StreamCursor<Event, Variables>;
  /** Told when the socket is back after a loss (not on the first connection). */
  onReconnected?: () => void;
}

export function useEventStream<Data, Variables extends AnyVariables, Event>(
  options: EventStreamOptions<Data, Variables, Event>,
): { error: CombinedError | null } {
  const client = useClient();
  const status = useSocketStatus();
  // The callbacks of the latest render, so that a new closure does not resubscribe.
  const latest = useRef(options);
  latest.current = options;
  // A stream is its variables; another stream (another job on the same page) starts afresh.
  const key = JSON.stringify(options.variables);
  // Only the last cursor delivered, not a set of them: constant memory for hours of events.
  const cursor = useRef<{ key: string; last: string | null }>({ key, last: null });
  const [losses, setLosses] = useState(0);
  const [error, setError] = useState<CombinedError | null>(null);
  const failed = useRef(false);

  useEffect(() => {
    if (!status) return undefined;
    let lost = false;
    return status.subscribe(() => {
      const now = status.get();
      if (now === 'reconnecting' && !lost) {
        lost = true;
        setLosses((n) => n + 1);
      } else if (now === 'connected' && lost) {
        lost = false;
        latest.current.onReconnected?.();
      }
    });
  }, [status]);

  const paused = options.pause ?? false;
  useEffect(() => {
    if (paused) return undefined;
    if (cursor.current.key !== key) cursor.current = { key, last: null };
    const { query, variables, cursor: resumable } = latest.current;
    const last = cursor.current.last;
    const asked = last !== null && resumable ? resumable.resume(last) : variables;
    const subscription = client.subscription(query, asked).subscribe((result) => {
      if (result.error) {
        failed.current = true;
        setError(result.error);
        return;
      }
      if (!result.data) return;
      if (failed.current) {
        failed.current = false;
        setError(null);
      }
      const { pick, onEvent, cursor: each } = latest.current;
      const event = pick(result.data);
      if (each) {
        const at = each.of(event);
        // A replay of what was delivered (a resubscription racing the old one): dropped.
        if (!isAfter(at, cursor.current.last)) return;
        cursor.current.last = at;
      }
      onEvent(event);
    });
    return () => subscription.unsubscribe();
  }, [client, key, paused, losses]);

  return { error };
}
