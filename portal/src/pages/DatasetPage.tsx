import { useEffect, useRef, useState } from 'react';
import { useParams } from 'react-router-dom';
import { useClient, useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatBytes, formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { PageGate } from '../components/PageGate';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { ColumnProfileCard } from '../datasets/ColumnProfileCard';
import { columnProfiles } from '../datasets/columnProfile';
import { ExpectationsEditor } from '../datasets/ExpectationsEditor';
import { QualityReportView } from '../datasets/QualityReportView';
import { TransformForm } from '../datasets/TransformForm';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { usePages } from '../api/pagination';
import { graphql } from '../gql';
import { useSession } from '../session/SessionContext';

const DatasetQuery = graphql(`
  query Dataset($slug: String!, $name: String!, $after: String) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
      dataset(name: $name) {
        id
        name
        description
        createdAt
        expectations
        latestVersion {
          id
          number
        }
        versions(first: 100, after: $after) {
          pageInfo {
            hasNextPage
            endCursor
          }
          nodes {
            id
            number
            sourceFormat
            rowCount
            sizeBytes
            createdAt
            contentSha256
            transformation
            parent {
              id
              number
            }
          }
        }
      }
    }
  }
`);

const ValidateMutation = graphql(`
  mutation ValidateDatasetVersion($id: ID!) {
    validateDatasetVersion(id: $id) {
      __typename
      ... on ValidationQueued {
        job {
          id
          state
        }
      }
      ...ErrorFields
    }
  }
`);

const BackgroundJobQuery = graphql(`
  query BackgroundJobState($id: ID!) {
    node(id: $id) {
      __typename
      ... on Job {
        id
        state
        reason
      }
    }
  }
`);

const VersionProfileQuery = graphql(`
  query DatasetVersionProfile($id: ID!) {
    node(id: $id) {
      __typename
      ... on DatasetVersion {
        id
        number
        rowCount
        columns {
          name
          type
        }
        columnStats
        qualityReport {
          ...QualityReportFields
        }
      }
    }
  }
`);

const VALIDATION_POLL_MS = 1_000;
/** How long the button waits for a validation before it says it is still running. */
const VALIDATION_WAIT_MS = 10 * 60_000;

/** Validation runs in a background job; its state is polled until it ends (a validation
 * takes seconds, and its job's events say nothing but its state). */
function ValidateButton({ versionId, versionNumber, onValidated }: { versionId: string; versionNumber: number; onValidated: () => void }) {
  const client = useClient();
  const [, validate] = useMutation(ValidateMutation);
  const [running, setRunning] = useState(false);
  const action = useMutationAction();
  const setProblem = action.setProblem;
  // The poll below ends with the component (another version shown, the page left): nothing is
  // asked or set for a button that is gone.
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  async function run() {
    if (running) return;
    setRunning(true);
    try {
      const answer = await action.run(() => validate({ id: versionId }), (data) => data.validateDatasetVersion);
      if (!answer) return;
      const deadline = Date.now() + VALIDATION_WAIT_MS;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, VALIDATION_POLL_MS));
        if (!mounted.current) return;
        if (Date.now() > deadline) {
          return setProblem({ code: 'STILL_RUNNING', message: 'the validation is still running: its report shows here once you reload the page after it ends' });
        }
        const polled = await client.query(BackgroundJobQuery, { id: answer.job.id }, { requestPolicy: 'network-only' }).toPromise();
        if (polled.error) return setProblem(polled.error);
        const job = polled.data?.node?.__typename === 'Job' ? polled.data.node : null;
        if (!job) return setProblem({ code: 'NOT_FOUND', message: 'the validation job is gone' });
        if (job.state === 'FAILED' || job.state === 'CANCELLED') {
          return setProblem({ code: job.state, message: `the validation did not finish: ${job.reason ?? 'no reason given'}` });
        }
        if (job.state === 'SUCCEEDED') return onValidated();
      }
    } finally {
      if (mounted.current) setRunning(false);
    }
  }

  return (
    <>
      {/* aria-disabled, not disabled: a disabled button drops the keyboard focus it had. */}
      <button type="button" aria-disabled={running} onClick={() => void run()}>
        {running ? `Validating version ${versionNumber}…` : `Validate version ${versionNumber}`}
      </button>
      <ErrorMessage error={action.problem} />
    </>
  );
}

function VersionProfile({ id, canChange, onNewVersion }: { id: string; canChange: boolean; onNewVersion: (number: number) => void }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: VersionProfileQuery, variables: { id } });
  if (fetching && !data) return <Loading what="the profile" />;
  // A failed refresh of a profile already shown is said beside it, not instead of it.
  if (error && !data) return <ErrorMessage error={error} />;
  const version = data?.node?.__typename === 'DatasetVersion' ? data.node : null;
  if (!version) return <p>This version is not there any more.</p>;
  const columns = columnProfiles(version.columns, version.columnStats);
  return (
    <>
      {error && <ErrorMessage error={error} />}
      {canChange && (
        <p>
          <ValidateButton versionId={version.id} versionNumber={version.number} onValidated={() => refetch({ requestPolicy: 'network-only' })} />
        </p>
      )}
      {version.qualityReport ? (
        <QualityReportView report={version.qualityReport} versionNumber={version.number} />
      ) : (
        <p className="muted">Version {version.number} has not been validated.</p>
      )}
      {canChange && <TransformForm versionId={version.id} versionNumber={version.number} columns={version.columns} onDone={onNewVersion} />}
    <section aria-labelledby="profile-heading">
      <h2 id="profile-heading">Profile of version {version.number}</h2>
      <p className="muted">
        {version.rowCount} rows, {columns.length} columns.
      </p>
      <div className="cards">
        {columns.map((column) => (
          <ColumnProfileCard key={column.name} column={column} rowCount={version.rowCount} />
        ))}
      </div>
    </section>
    </>
  );
}

/** The kinds of a derived version's steps, e.g. "drop_duplicates, impute_nulls". */
function transformationSummary(transformation: unknown): string {
  const steps = (transformation as { steps?: unknown } | null)?.steps ?? transformation;
  if (!Array.isArray(steps)) return 'a transformation';
  const kinds = steps.map((step) => String((step as { kind?: unknown } | null)?.kind ?? 'step').toLowerCase());
  return kinds.join(', ') || 'a transformation';
}

export function DatasetPage() {
  const params = useParams();
  const slug = params.slug ?? '';
  const name = params.name ?? '';
  const { session } = useSession();
  usePageTitle(name, 'Datasets', slug);
  // The API lists versions oldest first: the pages walk towards the newest.
  const pages = usePages(`${slug}\n${name}`);
  const [{ data, error, fetching }, refetch] = useQuery({ query: DatasetQuery, variables: { slug, name, after: pages.after } });
  const [chosen, setChosen] = useState<string | null>(null);
  // After a cleaning step, show the version it made once the list has it.
  const [wanted, setWanted] = useState<number | null>(null);
  const versionsLoaded = data?.project?.dataset?.versions.nodes;
  const latestLoaded = data?.project?.dataset?.latestVersion;
  useEffect(() => {
    // The new version is the latest: it may be on a page not shown.
    const found = [...(versionsLoaded ?? []), ...(latestLoaded ? [latestLoaded] : [])].find((version) => version.number === wanted);
    if (found) {
      setChosen(found.id);
      setWanted(null);
    }
  }, [versionsLoaded, latestLoaded, wanted]);

  const dataset = data?.project?.dataset;
  if (!dataset) {
    return (
      <PageGate query={{ data, error, fetching }} what="the dataset" notFound="Dataset not found" slug={slug}>
        There is no dataset “{name}” in this project that you may see.
      </PageGate>
    );
  }
  const versions = dataset.versions.nodes;
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const canChange = roleAtLeast(role, 'DEVELOPER') && !data?.project?.isArchived;
  const shown = chosen ?? dataset.latestVersion?.id ?? versions[versions.length - 1]?.id ?? null;
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>{dataset.name}</h1>
      {error && <ErrorMessage error={error} />}
      {dataset.description && <p>{dataset.description}</p>}
      <h2>Versions</h2>
      <p className="muted">
        Oldest first, as the API lists them{dataset.latestVersion && `; the latest is version ${dataset.latestVersion.number}`}.
      </p>
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Rows</th>
              <th scope="col">Size</th>
              <th scope="col">Format</th>
              <th scope="col">Made from</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((version) => (
              <tr key={version.id} aria-current={version.id === shown ? 'true' : undefined}>
                <td>
                  <button type="button" className="link" aria-pressed={version.id === shown} onClick={() => setChosen(version.id)}>
                    Version {version.number}
                  </button>
                </td>
                <td className="num">{version.rowCount}</td>
                <td className="num">{formatBytes(version.sizeBytes)}</td>
                <td>{version.sourceFormat}</td>
                <td>
                  {version.parent ? `version ${version.parent.number}` : 'upload'}
                  {version.transformation != null && <span className="muted"> by {transformationSummary(version.transformation)}</span>}
                </td>
                <td>{formatDate(version.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager what="the versions" pages={pages} info={dataset.versions.pageInfo} />
      <ExpectationsEditor datasetId={dataset.id} expectations={dataset.expectations} canEdit={canChange} />
      {shown && (
        <VersionProfile
          key={shown}
          id={shown}
          canChange={canChange}
          onNewVersion={(number) => {
            setWanted(number);
            refetch({ requestPolicy: 'network-only' });
          }}
        />
      )}
    </section>
  );
}
