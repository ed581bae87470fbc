import { lazy, Suspense, useEffect, useState } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router-dom';
import { Provider as UrqlProvider } from 'urql';
import { createPortalClient, type PortalClient } from './api/client';
import { SocketStatusContext } from './api/socketStatusContext';
import { ErrorBoundary } from './components/ErrorBoundary';
import { Loading } from './components/ErrorMessage';
import { Layout } from './components/Layout';
import { AuditPage } from './pages/AuditPage';
import { DatasetPage } from './pages/DatasetPage';
import { DeploymentPage } from './pages/DeploymentPage';
import { DeploymentsPage } from './pages/DeploymentsPage';
import { ModelPage } from './pages/ModelPage';
import { ModelsPage } from './pages/ModelsPage';
import { DatasetsPage } from './pages/DatasetsPage';
import { JobsPage } from './pages/JobsPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { ProjectPage } from './pages/ProjectPage';
import { ProjectsPage } from './pages/ProjectsPage';
import { SignInPage } from './pages/SignInPage';
import { SubmitJobPage } from './pages/SubmitJobPage';
import { TokensPage } from './pages/TokensPage';
import { SessionProvider, useSession } from './session/SessionContext';

// The chart library is loaded with the job page only, keeping the first load small.
const loadJobPage = () => import('./pages/JobPage');
const JobPage = lazy(loadJobPage);
// Opened straight at a job (a link, a reload), its chunk loads alongside the session check
// instead of after it: one round trip less before the chart draws.
if (/^\/projects\/[^/]+\/jobs\/(?!new$|compare$)[^/]+\/?$/.test(window.location.pathname)) void loadJobPage();
const CompareJobsPage = lazy(() => import('./pages/CompareJobsPage'));

function SignedInPortal({ csrfToken }: { csrfToken: string }) {
  const { expire, fetch } = useSession();
  // Made in an effect, not a memo, so that a remount (StrictMode's included) gets a live socket.
  const [portal, setPortal] = useState<PortalClient | null>(null);
  useEffect(() => {
    const made = createPortalClient({ csrfToken, onUnauthorized: expire, fetch });
    setPortal(made);
    return () => made.dispose();
  }, [csrfToken, expire, fetch]);
  if (!portal) return <Loading what="the portal" />;
  return (
    <UrqlProvider value={portal.client}>
      <SocketStatusContext.Provider value={portal.status}>
      <Routes>
        <Route element={<Layout status={portal.status} />}>
          <Route index element={<Navigate to="/projects" replace />} />
          <Route path="projects" element={<ProjectsPage />} />
          <Route path="projects/:slug" element={<ProjectPage />} />
          <Route path="projects/:slug/datasets" element={<DatasetsPage />} />
          <Route path="projects/:slug/datasets/:name" element={<DatasetPage />} />
          <Route path="projects/:slug/jobs" element={<JobsPage />} />
          <Route path="projects/:slug/jobs/new" element={<SubmitJobPage />} />
          <Route
            path="projects/:slug/jobs/compare"
            element={
              <Suspense fallback={<Loading what="the comparison" />}>
                <CompareJobsPage />
              </Suspense>
            }
          />
          <Route
            path="projects/:slug/jobs/:jobId"
            element={
              <Suspense fallback={<Loading what="the job" />}>
                <JobPage />
              </Suspense>
            }
          />
          <Route path="projects/:slug/models" element={<ModelsPage />} />
          <Route path="projects/:slug/models/:name" element={<ModelPage />} />
          <Route path="projects/:slug/deployments" element={<DeploymentsPage />} />
          <Route path="projects/:slug/deployments/:name" element={<DeploymentPage />} />
          <Route path="projects/:slug/audit" element={<AuditPage />} />
          <Route path="tokens" element={<TokensPage />} />
          <Route path="*" element={<NotFoundPage />} />
        </Route>
      </Routes>
      </SocketStatusContext.Provider>
    </UrqlProvider>
  );
}

function Portal() {
  const { state, session } = useSession();
  if (state.status === 'restoring') {
    return (
      <main className="signin">
        <Loading what="your session" />
      </main>
    );
  }
  if (!session) return <SignInPage />;
  return <SignedInPortal csrfToken={session.csrfToken} />;
}

export function App() {
  return (
    <ErrorBoundary>
      <SessionProvider>
        <BrowserRouter>
          <Portal />
        </BrowserRouter>
      </SessionProvider>
    </ErrorBoundary>
  );
}
