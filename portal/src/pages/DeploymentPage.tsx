import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import { useParams } from 'react-router-dom';
import { useMutation, useQuery, useSubscription } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate, formatNumber } from '../components/format';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { TryItForm } from '../deployments/TryItForm';
import { graphql } from '../gql';
import type { DeploymentEventsSubscription } from '../gql/graphql';
import { useSession } from '../session/SessionContext';

graphql(`
  fragment TrafficFields on DeploymentTraffic {
    stablePercent
    canaryPercent
    stableVersion {
      id
      number
      signature
      datasetVersion {
        id
        preview
      }
    }
    canaryVersion {
      id
      number
    }
    shadowVersion {
      id
      number
    }
  }
`);

const DeploymentQuery = graphql(`
  query Deployment($slug: String!, $name: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
      deployment(name: $name) {
        id
        name
        state
        reason
        runtime
        sourceAlias
        v2ModelName
        maxBatchSize
        maxWaitMs
        driftThreshold
        generation
        createdAt
        readyAt
        traffic {
          ...TrafficFields
        }
        pendingTraffic {
          ...TrafficFields
        }
        previousStableVersion {
          id
          number
        }
        model {
          id
          name
          versions(first: 100) {
            nodes {
              id
              number
            }
          }
        }
        drift {
          computedAt
          windowStart
          sampleCount
          maxPsi
          threshold
          alert
          features {
            feature
            psi
            sampleCount
          }
          modelVersion {
            id
            number
          }
        }
      }
    }
  }
`);

const DeploymentEventsDocument = graphql(`
  subscription DeploymentEvents($deploymentId: ID!) {
    deploymentEvents(deploymentId: $deploymentId) {
      cursor
      type
      state
      reason
      generation
      traffic
      at
    }
  }
`);


const UpdateTrafficMutation = graphql(`
  mutation UpdateDeploymentTraffic($input: UpdateDeploymentTrafficInput!) {
    updateDeploymentTraffic(input: $input) {
      __typename
      ... on DeploymentSuccess {
        deployment {
          id
          state
        }
      }
      ... on Error {
        code
        message
      }
      ... on InvalidInputError {
        fieldErrors {
          field
          message
        }
      }
    }
  }
`);

const PromoteMutation = graphql(`
  mutation PromoteDeployment($deployment: ID!) {
    promoteDeployment(deployment: $deployment) {
      __typename
      ... on DeploymentSuccess {
        deployment {
          id
          state
        }
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

const RollbackMutation = graphql(`
  mutation RollbackDeployment($deployment: ID!) {
    rollbackDeployment(deployment: $deployment) {
      __typename
      ... on DeploymentSuccess {
        deployment {
          id
          state
        }
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

const StopMutation = graphql(`
  mutation DeleteDeployment($deployment: ID!) {
    deleteDeployment(deployment: $deployment) {
      __typename
      ... on DeploymentSuccess {
        deployment {
          id
          state
        }
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

type DeploymentEvent = DeploymentEventsSubscription['deploymentEvents'];

function eventText(event: DeploymentEvent): string {
  const parts = [event.type.replace(/_/g, ' ')];
  if (event.state) parts.push(`→ ${event.state.toLowerCase()}`);
  const traffic = event.traffic as { stablePercent?: number; canaryPercent?: number } | null;
  if (traffic && typeof traffic.stablePercent === 'number') parts.push(`(stable ${traffic.stablePercent} %, canary ${traffic.canaryPercent ?? 0} %)`);
  return parts.join(' ');
}

interface Versions {
  id: string;
  number: number;
}

function TrafficEditor({
  deploymentId,
  stable,
  canary,
  canaryPercent,
  shadow,
  versions,
  onChanged,
}: {
  deploymentId: string;
  stable: Versions;
  canary: Versions | null;
  canaryPercent: number;
  shadow: Versions | null;
  versions: Versions[];
  onChanged: () => void;
}) {
  const [canaryId, setCanaryId] = useState(canary?.id ?? '');
  const [percent, setPercent] = useState(canaryPercent);
  const [shadowId, setShadowId] = useState(shadow?.id ?? '');
  const [problem, setProblem] = useState<unknown>(null);
  const [state, update] = useMutation(UpdateTrafficMutation);
  const others = versions.filter((each) => each.id !== stable.id);
  const share = canaryId ? percent : 0;

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const result = await update({
      input: { deployment: deploymentId, stablePercent: 100 - share, canaryPercent: share, canary: canaryId || null, shadow: shadowId || null },
    });
    const answer = result.data?.updateDeploymentTraffic;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'DeploymentSuccess') onChanged();
    else setProblem(resultError(answer));
  }

  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby="traffic-heading">
      <h2 id="traffic-heading">Edit traffic</h2>
      <div className="row">
        <label>
          Canary version
          <select value={canaryId} onChange={(e) => setCanaryId(e.target.value)}>
            <option value="">none</option>
            {others.map((each) => (
              <option key={each.id} value={each.id}>
                version {each.number}
              </option>
            ))}
          </select>
        </label>
        <label>
          Shadow version
          <select value={shadowId} onChange={(e) => setShadowId(e.target.value)}>
            <option value="">none</option>
            {others.map((each) => (
              <option key={each.id} value={each.id}>
                version {each.number}
              </option>
            ))}
          </select>
        </label>
      </div>
      <label>
        Canary share (%)
        <input
          type="range"
          min={0}
          max={100}
          step={1}
          disabled={!canaryId}
          value={share}
          aria-valuetext={`${share} % to the canary, ${100 - share} % to the stable version`}
          onChange={(e) => setPercent(Number(e.target.value))}
        />
      </label>
      <p aria-live="polite">
        Stable version {stable.number}: <strong>{100 - share} %</strong>
        {canaryId && (
          <>
            {' '}
            · canary: <strong>{share} %</strong>
          </>
        )}
      </p>
      <ErrorMessage error={problem} />
      <button type="submit" disabled={state.fetching}>
        Apply traffic
      </button>
    </form>
  );
}

export function DeploymentPage() {
  const params = useParams();
  const slug = params.slug ?? '';
  const name = params.name ?? '';
  const { session } = useSession();
  const [{ data, error, fetching }, refetch] = useQuery({ query: DeploymentQuery, variables: { slug, name } });
  const [, promote] = useMutation(PromoteMutation);
  const [, rollback] = useMutation(RollbackMutation);
  const [, stop] = useMutation(StopMutation);
  const [problem, setProblem] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [confirmStop, setConfirmStop] = useState(false);
  const [events, setEvents] = useState<DeploymentEvent[]>([]);
  const seen = useRef(new Set<string>());
  const deployment = data?.project?.deployment;
  const deploymentId = deployment?.id;

  useEffect(() => {
    seen.current = new Set();
    setEvents([]);
  }, [deploymentId]);

  const onEvent = useCallback(
    (_: unknown, event: DeploymentEventsSubscription) => {
      const each = event.deploymentEvents;
      // Replayed after a reconnection: already on the timeline.
      if (seen.current.has(each.cursor)) return event;
      seen.current.add(each.cursor);
      setEvents((old) => [...old, each]);
      refetch({ requestPolicy: 'network-only' });
      return event;
    },
    [refetch],
  );
  useSubscription(
    { query: DeploymentEventsDocument, variables: { deploymentId: deploymentId ?? '' }, pause: !deploymentId || deployment?.state === 'STOPPED' },
    onEvent,
  );

  if (fetching && !data) return <Loading what="the deployment" />;
  if (!data && error) return <ErrorMessage error={error} />;
  if (!deployment) {
    return (
      <section>
        <ProjectNav slug={slug} />
        <h1>Deployment not found</h1>
        <p>There is no live deployment “{name}” in this project that you may see; a stopped one is no longer listed.</p>
      </section>
    );
  }
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const writable = !data?.project?.isArchived && deployment.state !== 'STOPPED';
  const traffic = deployment.traffic;

  async function act(run: () => Promise<{ error?: unknown; data?: unknown }>, pick: (data: never) => { __typename?: string } | undefined) {
    setProblem(null);
    setBusy(true);
    try {
      const result = await run();
      const answer = result.data ? pick(result.data as never) : undefined;
      setProblem(result.error ?? resultError(answer));
      refetch({ requestPolicy: 'network-only' });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>
        Deployment: {deployment.name} <span className={`state state-${deployment.state.toLowerCase()}`}>{deployment.state.toLowerCase()}</span>
      </h1>
      <p className="muted">
        {deployment.model.name} on {deployment.runtime}
        {deployment.sourceAlias && ` · from alias ${deployment.sourceAlias}`} · V2 name <code>{deployment.v2ModelName}</code> · batches of up to{' '}
        {deployment.maxBatchSize}, waiting at most {deployment.maxWaitMs} ms
      </p>
      {deployment.reason && <p>Reason: {deployment.reason}</p>}
      <h2>Traffic</h2>
      <ul>
        <li>
          Stable: version {traffic.stableVersion.number}, {traffic.stablePercent} %
        </li>
        {traffic.canaryVersion && (
          <li>
            Canary: version {traffic.canaryVersion.number}, {traffic.canaryPercent} %
          </li>
        )}
        {traffic.shadowVersion && <li>Shadow: version {traffic.shadowVersion.number} (sees a copy of every request)</li>}
        {deployment.pendingTraffic && (
          <li>
            Warming: stable {deployment.pendingTraffic.stablePercent} %, canary {deployment.pendingTraffic.canaryPercent} %
          </li>
        )}
      </ul>
      <ErrorMessage error={problem} />
      {writable && roleAtLeast(role, 'DEVELOPER') && (
        <>
          <TrafficEditor
            key={`${deployment.generation}`}
            deploymentId={deployment.id}
            stable={traffic.stableVersion}
            canary={traffic.canaryVersion ?? null}
            canaryPercent={traffic.canaryPercent}
            shadow={traffic.shadowVersion ?? null}
            versions={deployment.model.versions.nodes}
            onChanged={() => refetch({ requestPolicy: 'network-only' })}
          />
          <div className="row actions">
            {traffic.canaryVersion && roleAtLeast(role, 'MAINTAINER') && (
              <button
                type="button"
                disabled={busy}
                onClick={() =>
                  void act(
                    () => promote({ deployment: deployment.id }),
                    (d: { promoteDeployment: { __typename?: string } }) => d.promoteDeployment,
                  )
                }
              >
                Promote canary
              </button>
            )}
            <button
              type="button"
              disabled={busy}
              onClick={() =>
                void act(
                  () => rollback({ deployment: deployment.id }),
                  (d: { rollbackDeployment: { __typename?: string } }) => d.rollbackDeployment,
                )
              }
            >
              Roll back
            </button>
            {roleAtLeast(role, 'MAINTAINER') &&
              (confirmStop ? (
                <button
                  type="button"
                  className="danger"
                  disabled={busy}
                  onClick={() =>
                    void act(
                      () => stop({ deployment: deployment.id }),
                      (d: { deleteDeployment: { __typename?: string } }) => d.deleteDeployment,
                    )
                  }
                >
                  Confirm: stop {deployment.name}
                </button>
              ) : (
                <button type="button" className="danger" onClick={() => setConfirmStop(true)}>
                  Stop deployment
                </button>
              ))}
          </div>
        </>
      )}
      {deployment.state === 'READY' || deployment.state === 'UPDATING' ? (
        <TryItForm
          key={traffic.stableVersion.id /* its fields follow the signature of the version served */}
          deploymentId={deployment.id}
          signature={traffic.stableVersion.signature}
          example={Array.isArray(traffic.stableVersion.datasetVersion?.preview) ? (traffic.stableVersion.datasetVersion.preview[0] as unknown) : null}
        />
      ) : (
        <p className="muted">The try-it form opens once the deployment is ready.</p>
      )}
      <h2>Timeline</h2>
      <ol className="timeline" aria-label="Deployment timeline" aria-live="polite">
        <li>
          <strong>created</strong> <time dateTime={deployment.createdAt}>{formatDate(deployment.createdAt)}</time>
        </li>
        {events.map((each) => (
          <li key={each.cursor}>
            <strong>{eventText(each)}</strong> {each.at && <time dateTime={each.at}>{formatDate(each.at)}</time>}
            {each.reason && <span className="muted"> {each.reason}</span>}
          </li>
        ))}
      </ol>
      <h2>Drift</h2>
      {deployment.drift.length === 0 ? (
        <p className="muted">No drift report yet: it needs sampled requests.</p>
      ) : (
        deployment.drift.map((report) => (
          <section key={report.modelVersion.id} className="panel" aria-label={`Drift of version ${report.modelVersion.number}`}>
            <h3>
              Version {report.modelVersion.number}: {report.alert ? <span className="error">drift alert</span> : <span className="ok">no alert</span>}
            </h3>
            <p className="muted">
              {report.sampleCount} sampled requests since {formatDate(report.windowStart)}, computed {formatDate(report.computedAt)}; alert
              threshold PSI {formatNumber(report.threshold)}
            </p>
            <div className="table-wrap" tabIndex={0}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Feature</th>
                    <th scope="col">PSI</th>
                    <th scope="col">Samples</th>
                  </tr>
                </thead>
                <tbody>
                  {report.features.map((feature) => {
                    const over = feature.psi !== null && feature.psi !== undefined && feature.psi > report.threshold;
                    const scale = Math.max(report.threshold * 2, report.maxPsi ?? 0, 0.001);
                    return (
                      <tr key={feature.feature}>
                        <td>{feature.feature}</td>
                        <td className={over ? 'error' : undefined}>
                          {feature.psi === null || feature.psi === undefined ? 'too few samples' : formatNumber(feature.psi)}
                          {over && ' (over threshold)'}
                          <svg width="140" height="10" role="presentation" className="inline-bar">
                            <rect className="track" x="0" y="0" width="140" height="10" />
                            <rect className={over ? 'bar warn' : 'bar'} x="0" y="0" height="10" width={Math.min(1, (feature.psi ?? 0) / scale) * 140} />
                            <rect className="mark" x={Math.min(1, report.threshold / scale) * 140 - 1} y="0" width="2" height="10" />
                          </svg>
                        </td>
                        <td className="num">{feature.sampleCount}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          </section>
        ))
      )}
    </section>
  );
}
