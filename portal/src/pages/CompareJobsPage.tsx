import { useEffect, useMemo, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router-dom';
import { useClient, useQuery } from 'urql';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatNumber } from '../components/format';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { graphql } from '../gql';
import { paths } from '../paths';
import { LiveChart } from '../training/LiveChart';
import { MetricBuffer } from '../training/metricBuffer';

const CompareQuery = graphql(`
  query CompareTrainingJobs($slug: String!, $ids: [ID!]!) {
    project(slug: $slug) {
      id
      compareTrainingJobs(ids: $ids) {
        hyperparameterNames
        metricNames
        rows
        jobs {
          id
          modelName
          state
          createdAt
          metricKeys
        }
      }
    }
  }
`);

const CurveQuery = graphql(`
  query JobCurve($id: ID!, $key: String!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: 1000) {
          step
          value
        }
      }
    }
  }
`);

/** A row of `compareTrainingJobs.rows`: {jobId, state, trainer, seed, hyperparameters,
 * finalMetrics, modelVersionId}, in the order of `jobs`. */
type Row = Record<string, unknown>;

/** Jobs side by side: their hyperparameters and final metrics, and one metric's curves overlaid. */
export default function CompareJobsPage() {
  const slug = useParams().slug ?? '';
  usePageTitle('Compare training jobs', slug);
  const [search] = useSearchParams();
  const ids = useMemo(() => search.getAll('job'), [search]);
  const client = useClient();
  const [{ data, error, fetching }] = useQuery({ query: CompareQuery, variables: { slug, ids }, pause: ids.length === 0 });
  const comparison = data?.project?.compareTrainingJobs;
  const keys = useMemo(() => [...new Set((comparison?.jobs ?? []).flatMap((job) => job.metricKeys))].sort(), [comparison]);
  const [metric, setMetric] = useState('');
  const chosen = metric || (keys.includes('val_loss') ? 'val_loss' : (keys[0] ?? ''));
  const buffer = useMemo(() => new MetricBuffer(), []);
  const [revision, setRevision] = useState(0);
  const [problem, setProblem] = useState<unknown>(null);

  useEffect(() => {
    if (!comparison || !chosen) return;
    let live = true;
    const labelled = comparison.jobs.map((job, index) => ({ job, label: `#${index + 1} ${job.modelName}` }));
    Promise.all(
      labelled.map(async ({ job, label }) => {
        const result = await client.query(CurveQuery, { id: job.id, key: chosen }).toPromise();
        if (result.error) throw result.error;
        const node = result.data?.node;
        return [label, node?.__typename === 'TrainingJob' ? node.metrics : []] as const;
      }),
    )
      .then((curves) => {
        if (!live) return;
        buffer.clear();
        buffer.replay(Object.fromEntries(curves));
        setRevision((n) => n + 1);
      })
      .catch((failure: unknown) => live && setProblem(failure));
    return () => {
      live = false;
    };
  }, [comparison, chosen, client, buffer]);

  if (ids.length === 0) {
    return (
      <section>
        <ProjectNav slug={slug} />
        <h1>Compare training jobs</h1>
        <p>
          Choose jobs to compare in the <Link to={paths.jobs(slug)}>list of training jobs</Link>.
        </p>
      </section>
    );
  }
  if (fetching && !data) return <Loading what="the comparison" />;
  if (!data && error) return <ErrorMessage error={error} />;
  if (!comparison) return <ErrorMessage error={error ?? { code: 'NOT_FOUND', message: 'no such project' }} />;
  const rows = comparison.rows as Row[];
  const value = (index: number, group: 'hyperparameters' | 'finalMetrics', name: string) => {
    const nested = rows[index]?.[group];
    return typeof nested === 'object' && nested !== null ? (nested as Record<string, unknown>)[name] : undefined;
  };
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Compare training jobs</h1>
      <ErrorMessage error={problem} />
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">Job</th>
              {comparison.jobs.map((job, index) => (
                <th key={job.id} scope="col">
                  <Link to={paths.job(slug, job.id)}>
                    #{index + 1} {job.modelName}
                  </Link>{' '}
                  <span className="muted">{job.state.toLowerCase()}</span>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {comparison.hyperparameterNames.map((name) => (
              <tr key={`h-${name}`}>
                <th scope="row">{name}</th>
                {comparison.jobs.map((job, index) => (
                  <td key={job.id}>{formatNumber(value(index, 'hyperparameters', name))}</td>
                ))}
              </tr>
            ))}
            {comparison.metricNames
              // Lists (a confusion matrix, the labels) are for the model page, not a row of figures.
              .filter((name) => comparison.jobs.some((_, index) => typeof value(index, 'finalMetrics', name) !== 'object'))
              .map((name) => (
              <tr key={`m-${name}`}>
                <th scope="row">
                  <strong>{name}</strong>
                </th>
                {comparison.jobs.map((job, index) => (
                  <td key={job.id} className="num">
                    {formatNumber(value(index, 'finalMetrics', name))}
                  </td>
                ))}
              </tr>
              ))}
          </tbody>
        </table>
      </div>
      <h2>Curves</h2>
      <label>
        Metric
        <select value={chosen} onChange={(e) => setMetric(e.target.value)}>
          {keys.map((key) => (
            <option key={key}>{key}</option>
          ))}
        </select>
      </label>
      <LiveChart buffer={buffer} revision={revision} singleScale={chosen} caption={`${chosen} of each job, by step.`} />
    </section>
  );
}
