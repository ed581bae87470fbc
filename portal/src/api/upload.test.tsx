import { act, cleanup, render, screen, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SessionProvider, useSession } from '../session/SessionContext';
import type { FetchLike } from './csrfFetch';
import { uploadDatasetVersion } from './upload';
import { useDatasetUpload } from './useDatasetUpload';

/** Stands in for the browser's XMLHttpRequest: the test says how each request ends. */
class FakeXhr {
  static made: FakeXhr[] = [];
  status = 0;
  statusText = '';
  responseText = '';
  aborted = false;
  headers: Record<string, string> = {};
  upload: { onprogress: ((event: { lengthComputable: boolean; loaded: number; total: number }) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;

  constructor() {
    FakeXhr.made.push(this);
  }

  open(): void {}

  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }

  send(): void {}

  abort(): void {
    this.aborted = true;
    this.onabort?.();
  }

  answer(status: number, body: unknown): void {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload?.();
  }
}

beforeEach(() => {
  FakeXhr.made = [];
  vi.stubGlobal('XMLHttpRequest', FakeXhr);
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const FILE = new Blob(['a,b\n1,2\n']);

describe('dataset uploads', () => {
  it('ends the session when the API answers 401, and says why', async () => {
    const onUnauthorized = vi.fn();
    const started = uploadDatasetVersion({ project: 'p', dataset: 'd', file: FILE, csrfToken: 'csrf', onUnauthorized });
    FakeXhr.made[0]?.answer(401, { error: { code: 'UNAUTHENTICATED', message: 'sign in again' } });
    await expect(started.done).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it('does not end the session for another refusal', async () => {
    const onUnauthorized = vi.fn();
    const started = uploadDatasetVersion({ project: 'p', dataset: 'd', file: FILE, csrfToken: 'csrf', onUnauthorized });
    FakeXhr.made[0]?.answer(403, { error: { code: 'FORBIDDEN', message: 'not yours' } });
    await expect(started.done).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(onUnauthorized).not.toHaveBeenCalled();
  });
});

const ALICE = { username: 'alice', isAdmin: false, csrfToken: 'csrf-1', expiresAt: '2030-01-01T00:00:00+00:00' };
const signedIn: FetchLike = async () => new Response(JSON.stringify(ALICE), { status: 200, headers: { 'content-type': 'application/json' } });

function UploadProbe() {
  const { state } = useSession();
  const upload = useDatasetUpload();
  return (
    <>
      <p>{state.status}</p>
      <button type="button" onClick={() => void upload({ project: 'p', dataset: 'd', file: FILE }).catch(() => undefined)}>
        Upload
      </button>
    </>
  );
}

function Page({ open }: { open: boolean }) {
  return <SessionProvider fetch={signedIn}>{open ? <UploadProbe /> : <p>elsewhere</p>}</SessionProvider>;
}

describe('useDatasetUpload', () => {
  it('aborts the upload when its page goes away', async () => {
    const page = render(<Page open />);
    await screen.findByText('signedIn');
    act(() => screen.getByRole('button', { name: 'Upload' }).click());
    const xhr = FakeXhr.made[0];
    expect(xhr?.headers['x-aiaas-csrf']).toBe('csrf-1');
    expect(xhr?.aborted).toBe(false);
    page.rerender(<Page open={false} />);
    expect(xhr?.aborted).toBe(true);
  });

  it("expires the session on the upload's 401", async () => {
    render(<Page open />);
    await screen.findByText('signedIn');
    act(() => screen.getByRole('button', { name: 'Upload' }).click());
    act(() => FakeXhr.made[0]?.answer(401, { error: { code: 'UNAUTHENTICATED', message: 'sign in again' } }));
    await waitFor(() => expect(screen.getByText('signedOut')).toBeTruthy());
  });
});
