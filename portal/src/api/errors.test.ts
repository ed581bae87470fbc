import { CombinedError } from 'urql';
import { describe, expect, it } from 'vitest';
import { describeError } from './errors';
import { ApiRequestError } from './session';

describe('describeError', () => {
  it('gives a GraphQL error type’s message and code', () => {
    expect(describeError({ __typename: 'NotFoundError', code: 'NOT_FOUND', message: 'no such project' })).toBe(
      'no such project (NOT_FOUND)',
    );
  });

  it('lists what is wrong with each field', () => {
    const error = {
      code: 'INVALID_INPUT',
      message: 'invalid input',
      fieldErrors: [
        { field: 'slug', message: 'lowercase letters, digits and hyphens' },
        { field: 'name', message: 'required' },
      ],
    };
    expect(describeError(error)).toBe('invalid input (INVALID_INPUT): slug: lowercase letters, digits and hyphens; name: required');
  });

  it('does not repeat field errors that the message already says', () => {
    const error = { code: 'BAD_USER_INPUT', message: 'bad inputs: age: must hold numbers', fieldErrors: [{ field: 'age', message: 'must hold numbers' }] };
    expect(describeError(error)).toBe('bad inputs: age: must hold numbers (BAD_USER_INPUT)');
  });

  it('reads the REST error body', () => {
    expect(describeError({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'larger than 1 GB' } })).toBe(
      'larger than 1 GB (PAYLOAD_TOO_LARGE)',
    );
  });

  it('says when to try again after a rate limit', () => {
    const error = new ApiRequestError(429, { code: 'RATE_LIMITED', message: 'too many attempts', retryAfterSeconds: 30 });
    expect(describeError(error)).toBe('too many attempts (RATE_LIMITED)');
    expect(describeError(error.apiError)).toBe('too many attempts (RATE_LIMITED). Try again in 30 s.');
  });

  it('names a network failure as such', () => {
    const error = new CombinedError({ networkError: new Error('Failed to fetch') });
    expect(describeError(error)).toBe('Cannot reach the server: Failed to fetch (NETWORK_ERROR)');
  });

  it('gives GraphQL execution errors with their code', () => {
    const error = new CombinedError({
      graphQLErrors: [{ message: 'not allowed', extensions: { code: 'FORBIDDEN' } }],
    });
    expect(describeError(error)).toBe('not allowed (FORBIDDEN)');
  });

  it('never answers blank', () => {
    expect(describeError(undefined)).toMatch(/went wrong/);
    expect(describeError({})).toMatch(/went wrong/);
    expect(describeError(new Error(''))).toBe('Error');
  });
});
