import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useQuery } from 'urql';
import { recordBounded } from '../api/bounded';
import { coalesce } from '../api/coalesce';
import { usePages } from '../api/pagination';
import { useEventStream } from '../api/useEventStream';
import { ErrorMessage } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { PageGate } from '../components/PageGate';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import { paths } from '../paths';
import type { ProjectJobChangesSubscription } from '../gql/graphql';
import { useSession } from '../session/SessionContext';
import { stateLabel } from '../training/jobStates';

const TrainingJobsQuery = graphql(`
  query TrainingJobs($slug: String!, $after: String) {
    project(slug: $slug) {
      id
      isArchived
      viewerRole
      trainingJobs(first: 50, after: $after) {
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          id
          state
          trainer
          target
          modelName
          createdAt
          startedAt
          finishedAt
          reason
          latestMetrics
        }
      }
    }
  }
`);

// The list follows the project's job changes live: each change carries the job as it now stands,
// laid over the row the query read; a job the list does not hold yet (submitted elsewhere) makes
// the first page (newest first) read again. The stream takes no cursor: after a lost connection
// the page is read again instead, for the changes it missed.
const JobChangesSubscription = graphql(`
  subscription ProjectJobChanges($project: ID!) {
    projectJobChanges(project: $project) {
      id
      state
      startedAt
      finishedAt
      reason
    }
  }
`);

type JobChange = ProjectJobChangesSubscription['projectJobChanges'];

/** The most jobs `compareTrainingJobs` takes at once. */
const MAX_COMPARED = 20;
/** Changes are kept for the jobs on the page only, and never more than this many. */
const MAX_CHANGES = 100;
/** A burst of new jobs (a sweep's trials) costs one read of the page. */
const REFETCH_COALESCE_MS = 300;

export function JobsPage() {
  const slug = useParams().slug ?? '';
  usePageTitle('Training jobs', slug);
  const { session } = useSession();
  const pages = usePages(slug);
  const [{ data, error, fetching }, refetch] = useQuery({ query: TrainingJobsQuery, variables: { slug, after: pages.after } });
  const project = data?.project;
  const listed = project?.trainingJobs.nodes;
  const [changes, setChanges] = useState<ReadonlyMap<string, JobChange>>(() => new Map());
  const jobs = (listed ?? []).map((job) => ({ ...job, ...changes.get(job.id) }));
  const [compared, setCompared] = useState<string[]>([]);
  const compareLink = paths.compareJobs(slug, compared);

  // The ids on the page, read by the stream's callback: a ref, so the page does not resubscribe.
  const listedIds = useRef(new Set<string>());
  listedIds.current = new Set((listed ?? []).map((job) => job.id));
  const firstPage = pages.number === 1;
  const refresh = useMemo(() => coalesce(() => refetch({ requestPolicy: 'network-only' }), REFETCH_COALESCE_MS), [refetch]);
  useEffect(() => () => refresh.cancel(), [refresh]);
  const onChange = useCallback(
    (change: JobChange) => {
      const known = listedIds.current;
      setChanges((old) => recordBounded(old, change.id, change, (id) => known.has(id), MAX_CHANGES));
      // A new job shows on the first page only; a later page would shift under the reader.
      if (!known.has(change.id) && firstPage) refresh.request();
    },
    [firstPage, refresh],
  );
  useEventStream({
    query: JobChangesSubscription,
    variables: { project: project?.id ?? '' },
    pause: !project,
    pick: (result: ProjectJobChangesSubscription) => result.projectJobChanges,
    onEvent: onChange,
    onReconnected: () => refresh.request(),
  });

  if (!project) {
    return (
      <PageGate query={{ data, error, fetching }} what="training jobs" notFound="Project not found">
        There is no project “{slug}” that you may see.
      </PageGate>
    );
  }
  const role = effectiveRole(project.viewerRole, session?.isAdmin ?? false);
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Training jobs</h1>
      <p className="muted">Newest first; states change live{pages.number > 1 && ', and jobs submitted since show on the first page'}.</p>
      {error && <ErrorMessage error={error} />}
      {roleAtLeast(role, 'DEVELOPER') && !project.isArchived && (
        <p>
          <Link className="button" to={paths.submitJob(slug)}>
            Train a model
          </Link>
        </p>
      )}
      {compared.length >= 2 && (
        <p>
          <Link className="button" to={compareLink}>
            Compare {compared.length} jobs
          </Link>
        </p>
      )}
      {jobs.length === 0 ? (
        <p>No training job yet.</p>
      ) : (
        <div className="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Compare</th>
                <th scope="col">Job</th>
                <th scope="col">State</th>
                <th scope="col">Trainer</th>
                <th scope="col">Target</th>
                <th scope="col">Created</th>
                <th scope="col">Finished</th>
              </tr>
            </thead>
            {/* Not a live region: a table body read out on every refresh says nothing usable. */}
            <tbody>
              {jobs.map((job) => (
                <tr key={job.id}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`Compare job ${job.modelName} of ${formatDate(job.createdAt)}`}
                      checked={compared.includes(job.id)}
                      disabled={!compared.includes(job.id) && compared.length >= MAX_COMPARED}
                      onChange={(e) => setCompared((old) => (e.target.checked ? [...old, job.id] : old.filter((id) => id !== job.id)))}
                    />
                  </td>
                  <td>
                    <Link to={paths.job(slug, job.id)}>{job.modelName}</Link>
                  </td>
                  <td>
                    <span className={`state state-${job.state.toLowerCase()}`}>{stateLabel(job.state)}</span>
                    {job.reason && <span className="muted"> {job.reason}</span>}
                  </td>
                  <td>{job.trainer}</td>
                  <td>{job.target}</td>
                  <td>{formatDate(job.createdAt)}</td>
                  <td>{formatDate(job.finishedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager what="training jobs" pages={pages} info={project.trainingJobs.pageInfo} />
    </section>
  );
}
