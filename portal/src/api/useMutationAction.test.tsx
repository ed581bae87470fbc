import { act, cleanup, render } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { describeError } from './errors';
import { mutationOutcome, NO_ANSWER, useMutationAction, type MutationAction } from './useMutationAction';

afterEach(cleanup);

// A result union as the generated types have it: one success member, error members with code
// and message (and, for InvalidInputError, each field's problem).
type Answer =
  | { __typename: 'CreateProjectSuccess'; project: { slug: string } }
  | { __typename: 'ConflictError'; code: string; message: string }
  | { __typename: 'InvalidInputError'; code: string; message: string; fieldErrors: Array<{ field: string; message: string }> };
type Data = { createProject: Answer };

const pick = (data: Data) => data.createProject;

describe('mutationOutcome', () => {
  it('gives the success member, typed as it', () => {
    const outcome = mutationOutcome<Data, Answer>({ data: { createProject: { __typename: 'CreateProjectSuccess', project: { slug: 'fraud' } } } }, pick);
    expect(outcome.ok).toBe(true);
    // Compiles only because the success member is narrowed: no cast.
    if (outcome.ok) expect(outcome.value.project.slug).toBe('fraud');
  });

  it('gives the union’s error member as the problem, with its fields', () => {
    const refused: Answer = { __typename: 'InvalidInputError', code: 'INVALID_INPUT', message: 'bad input', fieldErrors: [{ field: 'slug', message: 'lowercase only' }] };
    const outcome = mutationOutcome<Data, Answer>({ data: { createProject: refused } }, pick);
    expect(outcome).toEqual({ ok: false, problem: refused });
    if (!outcome.ok) expect(describeError(outcome.problem)).toBe('bad input (INVALID_INPUT): slug: lowercase only');
  });

  it('gives a request’s error before anything else', () => {
    const error = { graphQLErrors: [{ message: 'denied', extensions: { code: 'FORBIDDEN' } }] };
    expect(mutationOutcome<Data, Answer>({ error, data: null }, pick)).toEqual({ ok: false, problem: error });
  });

  it('says so when the server answered neither data nor an error', () => {
    expect(mutationOutcome<Data, Answer>({}, pick)).toEqual({ ok: false, problem: NO_ANSWER });
    expect(mutationOutcome<{ createProject: Answer | null }, Answer | null>({ data: { createProject: null } }, (data) => data.createProject)).toEqual({
      ok: false,
      problem: NO_ANSWER,
    });
  });
});

describe('useMutationAction', () => {
  let action: MutationAction | null = null;
  function Probe() {
    action = useMutationAction();
    return <p>{action.busy ? 'busy' : action.problem ? describeError(action.problem) : 'idle'}</p>;
  }

  it('is busy while running, then holds the problem; a later success clears it', async () => {
    const { container } = render(<Probe />);
    let answer: (value: { data: Data }) => void = () => {};
    let running: Promise<unknown> = Promise.resolve();
    act(() => {
      running = action!.run(() => new Promise<{ data: Data }>((resolve) => (answer = resolve)), pick);
    });
    expect(container.textContent).toBe('busy');
    await act(async () => {
      answer({ data: { createProject: { __typename: 'ConflictError', code: 'CONFLICT', message: 'the slug is taken' } } });
      expect(await running).toBeNull();
    });
    expect(container.textContent).toBe('the slug is taken (CONFLICT)');

    let made: unknown = null;
    await act(async () => {
      made = await action!.run(async () => ({ data: { createProject: { __typename: 'CreateProjectSuccess' as const, project: { slug: 'fraud' } } } }), pick);
    });
    expect(made).toEqual({ __typename: 'CreateProjectSuccess', project: { slug: 'fraud' } });
    expect(container.textContent).toBe('idle');
  });

  it('shows a request that threw as the problem, and is not left busy', async () => {
    const { container } = render(<Probe />);
    await act(async () => {
      await action!.run(() => Promise.reject(new Error('socket closed')), pick);
    });
    expect(container.textContent).toBe('socket closed');
  });
});
