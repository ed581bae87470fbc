// One way of running a mutation from a page: its result is either the union's success member,
// or a problem to show (a network or GraphQL error, the union's error member, no answer at all).
// Pages used to repeat this handling, each with an untyped `pick` cast to `never`.
import { useCallback, useState } from 'react';
import { isApiError, type ApiErrorLike } from './errors';

/** What urql's `executeMutation` resolves to, as far as this module needs it. */
export interface MutationResultLike<Data> {
  data?: Data | null;
  error?: unknown;
}

/** The members of a result union that are not errors. */
export type SuccessOf<Answer> = Exclude<NonNullable<Answer>, ApiErrorLike>;

export type MutationOutcome<Answer> = { ok: true; value: SuccessOf<Answer> } | { ok: false; problem: unknown };

/** Said when the server answers neither data nor an error: never a blank error line. */
export const NO_ANSWER: ApiErrorLike = { code: 'NO_ANSWER', message: 'The server answered without a result' };

/** The success member of a mutation's answer, or the problem to show instead. */
export function mutationOutcome<Data, Answer>(result: MutationResultLike<Data>, pick: (data: Data) => Answer): MutationOutcome<Answer> {
  if (result.error) return { ok: false, problem: result.error };
  const answer = result.data ? pick(result.data) : null;
  if (answer === null || answer === undefined) return { ok: false, problem: NO_ANSWER };
  if (isApiError(answer)) return { ok: false, problem: answer };
  return { ok: true, value: answer as SuccessOf<Answer> };
}

export interface MutationAction {
  /** Runs `execute`, then sets `problem` from its answer: resolves to the success member, or
   * to null when there was a problem. */
  run<Data, Answer>(execute: () => Promise<MutationResultLike<Data>>, pick: (data: Data) => Answer): Promise<SuccessOf<Answer> | null>;
  /** The last run's problem (null while running and after a success). */
  problem: unknown;
  setProblem(problem: unknown): void;
  /** Whether a run is in flight: the page's action buttons wait for it. */
  busy: boolean;
}

/** A page's (or a form's) mutations: one problem line and one busy flag for all of them. */
export function useMutationAction(): MutationAction {
  const [problem, setProblem] = useState<unknown>(null);
  const [running, setRunning] = useState(0);
  const run = useCallback(async <Data, Answer>(execute: () => Promise<MutationResultLike<Data>>, pick: (data: Data) => Answer) => {
    setProblem(null);
    setRunning((count) => count + 1);
    try {
      const outcome = mutationOutcome(await execute(), pick);
      if (outcome.ok) return outcome.value;
      setProblem(outcome.problem);
      return null;
    } catch (error) {
      setProblem(error);
      return null;
    } finally {
      setRunning((count) => count - 1);
    }
  }, []);

  return { run, problem, setProblem, busy: running > 0 };
}
