// A burst of events (a deployment's history replayed, a rollout's quick steps) must cost one
// refetch, not one per event: the run waits until the requests pause for `waitMs`. A steady
// stream of requests would never pause, so it also runs `maxWaitMs` after the first request
// still pending: never starved.

export interface Coalesced {
  /** Asks for a run, coalesced with the other requests of its burst. */
  request(): void;
  /** Forgets a pending run (the page is gone). */
  cancel(): void;
}

export function coalesce(run: () => void, waitMs: number, maxWaitMs = waitMs * 8): Coalesced {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let firstAt: number | null = null;
  const fire = () => {
    timer = null;
    firstAt = null;
    run();
  };
  return {
    request() {
      const now = Date.now();
      firstAt ??= now;
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(fire, Math.max(0, Math.min(waitMs, firstAt + maxWaitMs - now)));
    },
    cancel() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      firstAt = null;
    },
  };
}
