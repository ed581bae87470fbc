import { describe, expect, it, vi } from 'vitest';
import { CSRF_HEADER, makeCsrfFetch } from './csrfFetch';

function recordingFetch(status = 200) {
  const calls: Array<{ input: RequestInfo | URL; init: RequestInit }> = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    calls.push({ input, init });
    return new Response('{}', { status });
  });
  return { fetch, calls };
}

describe('makeCsrfFetch', () => {
  it('sends the CSRF header and same-origin credentials, keeping the caller’s headers', async () => {
    const { fetch, calls } = recordingFetch();
    const wrapped = makeCsrfFetch({ csrfToken: () => 'tok-1', fetch });
    await wrapped('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' } });
    const headers = new Headers(calls[0]?.init.headers);
    expect(headers.get(CSRF_HEADER)).toBe('tok-1');
    expect(headers.get('content-type')).toBe('application/json');
    expect(calls[0]?.init.credentials).toBe('same-origin');
    expect(calls[0]?.init.method).toBe('POST');
  });

  it('reads the token at each request, so a new session’s token is used', async () => {
    const { fetch, calls } = recordingFetch();
    let token = 'old';
    const wrapped = makeCsrfFetch({ csrfToken: () => token, fetch });
    await wrapped('/graphql');
    token = 'new';
    await wrapped('/graphql');
    expect(calls.map((call) => new Headers(call.init.headers).get(CSRF_HEADER))).toEqual(['old', 'new']);
  });

  it('never sends the token to another origin', async () => {
    const { fetch, calls } = recordingFetch();
    const wrapped = makeCsrfFetch({ csrfToken: () => 'tok-1', fetch });
    await wrapped('https://elsewhere.example/graphql');
    await wrapped(new URL('/graphql', globalThis.location.href));
    expect(calls.map((call) => new Headers(call.init.headers).get(CSRF_HEADER))).toEqual([null, 'tok-1']);
  });

  it('sends no header without a session', async () => {
    const { fetch, calls } = recordingFetch();
    await makeCsrfFetch({ csrfToken: () => null, fetch })('/graphql');
    expect(new Headers(calls[0]?.init.headers).has(CSRF_HEADER)).toBe(false);
  });

  it('tells when the API answers 401, and only then', async () => {
    const onUnauthorized = vi.fn();
    await makeCsrfFetch({ csrfToken: () => 't', onUnauthorized, fetch: recordingFetch(200).fetch })('/graphql');
    expect(onUnauthorized).not.toHaveBeenCalled();
    const response = await makeCsrfFetch({ csrfToken: () => 't', onUnauthorized, fetch: recordingFetch(401).fetch })('/graphql');
    expect(response.status).toBe(401);
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });
});
