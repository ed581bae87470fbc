import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { useEffect, useState } from 'react';
import { Link, MemoryRouter, Route, Routes } from 'react-router-dom';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketStatus } from '../api/client';
import type { FetchLike } from '../api/csrfFetch';
import { paths } from '../paths';
import { SessionProvider } from '../session/SessionContext';
import { Layout } from './Layout';
import { usePageTitle } from './usePageTitle';

afterEach(cleanup);

const ALICE = { username: 'alice', isAdmin: false, csrfToken: 'csrf-1', expiresAt: '2030-01-01T00:00:00+00:00' };
const signedIn: FetchLike = async () => new Response(JSON.stringify(ALICE), { status: 200, headers: { 'content-type': 'application/json' } });

/** A page whose heading comes with its data, as the portal's pages' do. */
function SlowPage({ title, field }: { title: string; field?: boolean }) {
  usePageTitle(title, 'fraud');
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    const timer = setTimeout(() => setLoaded(true), 20);
    return () => clearTimeout(timer);
  }, []);
  return (
    <section>
      {field && <input aria-label="Search" />}
      {loaded ? <h1>{title}</h1> : <p>Loading…</p>}
      <Link to={paths.models('fraud')}>to the models</Link> <Link to={paths.deployments('fraud')}>to the deployments</Link>
    </section>
  );
}

function Portal() {
  return (
    <SessionProvider fetch={signedIn}>
      <MemoryRouter initialEntries={[paths.datasets('fraud')]}>
        <Routes>
          <Route element={<Layout status={new SocketStatus()} />}>
            <Route path="projects/:slug/datasets" element={<SlowPage title="Datasets" />} />
            <Route path="projects/:slug/models" element={<SlowPage title="Models" />} />
            <Route path="projects/:slug/deployments" element={<SlowPage title="Deployments" field />} />
          </Route>
        </Routes>
      </MemoryRouter>
    </SessionProvider>
  );
}

describe('navigation', () => {
  it('names each page in the title, and moves focus to its heading once it is there', async () => {
    render(<Portal />);
    await screen.findByRole('heading', { name: 'Datasets', level: 1 });
    expect(document.title).toBe('Datasets · fraud · aiaas');
    // The first page is left to the browser's own start.
    expect(document.activeElement).toBe(document.body);

    fireEvent.click(screen.getByRole('link', { name: 'to the models' }));
    expect(document.title).toBe('Models · fraud · aiaas');
    const heading = await screen.findByRole('heading', { name: 'Models', level: 1 });
    expect(document.activeElement).toBe(heading);
    // Focusable by script, not a tab stop.
    expect(heading.getAttribute('tabindex')).toBe('-1');
  });

  it('leaves focus where the user already is in the new page', async () => {
    render(<Portal />);
    await screen.findByRole('heading', { name: 'Datasets', level: 1 });
    fireEvent.click(screen.getByRole('link', { name: 'to the deployments' }));
    const search = screen.getByLabelText('Search');
    act(() => search.focus());
    await screen.findByRole('heading', { name: 'Deployments', level: 1 });
    expect(document.activeElement).toBe(search);
  });
});
