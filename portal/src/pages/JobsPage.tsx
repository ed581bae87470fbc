import { useCallback, useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useQuery, useSubscription } from 'urql';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import type { ProjectJobChangesSubscription } from '../gql/graphql';
import { useSession } from '../session/SessionContext';
import { stateLabel } from '../training/jobStates';

const TrainingJobsQuery = graphql(`
  query TrainingJobs($slug: String!) {
    project(slug: $slug) {
      id
      isArchived
      viewerRole
      trainingJobs(first: 50) {
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
// it read the page again.
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

export function JobsPage() {
  const slug = useParams().slug ?? '';
  const { session } = useSession();
  const [{ data, error, fetching }, refetch] = useQuery({ query: TrainingJobsQuery, variables: { slug } });
  const project = data?.project;
  const listed = project?.trainingJobs.nodes;
  const [changes, setChanges] = useState<Record<string, JobChange>>({});
  const jobs = (listed ?? []).map((job) => ({ ...job, ...changes[job.id] }));
  const [compared, setCompared] = useState<string[]>([]);
  const compareLink = `/projects/${slug}/jobs/compare?${compared.map((id) => `job=${encodeURIComponent(id)}`).join('&')}`;

  const onChange = useCallback(
    (_: unknown, event: ProjectJobChangesSubscription) => {
      const change = event.projectJobChanges;
      setChanges((old) => ({ ...old, [change.id]: change }));
      if (!listed?.some((job) => job.id === change.id)) refetch({ requestPolicy: 'network-only' });
      return event;
    },
    [listed, refetch],
  );
  useSubscription({ query: JobChangesSubscription, variables: { project: project?.id ?? '' }, pause: !project }, onChange);

  if (fetching && !data) return <Loading what="training jobs" />;
  if (!data && error) return <ErrorMessage error={error} />;
  if (!project) {
    return (
      <section>
        <h1>Project not found</h1>
        <p>There is no project “{slug}” that you may see.</p>
      </section>
    );
  }
  const role = effectiveRole(project.viewerRole, session?.isAdmin ?? false);
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Training jobs</h1>
      {error && <ErrorMessage error={error} />}
      {roleAtLeast(role, 'DEVELOPER') && !project.isArchived && (
        <p>
          <Link className="button" to={`/projects/${slug}/jobs/new`}>
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
            <tbody aria-live="polite">
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
                    <Link to={`/projects/${slug}/jobs/${encodeURIComponent(job.id)}`}>{job.modelName}</Link>
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
    </section>
  );
}
