import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { appendBounded, emptyBounded, type Bounded } from '../api/bounded';
import { coalesce } from '../api/coalesce';
import { useEventStream } from '../api/useEventStream';
import { useMutationAction } from '../api/useMutationAction';
import { ConfirmButton } from '../components/ConfirmButton';
import { ErrorMessage } from '../components/ErrorMessage';
import { formatDate, formatNumber } from '../components/format';
import { PageGate } from '../components/PageGate';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
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
  subscription DeploymentEvents($deploymentId: ID!, $after: String) {
    deploymentEvents(deploymentId: $deploymentId, after: $after) {
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
      ...ErrorFields
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
      ...ErrorFields
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
      ...ErrorFields
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
      ...ErrorFields
    }
  }
`);

type DeploymentEvent = DeploymentEventsSubscription['deploymentEvents'];

/** The live timeline keeps its newest entries only: a deployment lives for months. */
const MAX_TIMELINE_EVENTS = 200;
/** The events of one burst (the history on opening, a rollout's steps) cost one refetch. */
const REFETCH_COALESCE_MS = 300;

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
  const [, update] = useMutation(UpdateTrafficMutation);
  const action = useMutationAction();
  const others = versions.filter((each) => each.id !== stable.id);
  const share = canaryId ? percent : 0;

  async function submit(event: FormEvent) {
    event.preventDefault();
    const input = { deployment: deploymentId, stablePercent: 100 - share, canaryPercent: share, canary: canaryId || null, shadow: shadowId || null };
    if (await action.run(() => update({ input }), (data) => data.updateDeploymentTraffic)) onChanged();
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
      {/* Not a live region: the slider's value text already says the same on every move. */}
      <p>
        Stable version {stable.number}: <strong>{100 - share} %</strong>
        {canaryId && (
          <>
            {' '}
            · canary: <strong>{share} %</strong>
          </>
        )}
      </p>
      <ErrorMessage error={action.problem} />
      <button type="submit" disabled={action.busy}>
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
  const action = useMutationAction();
  usePageTitle(name, 'Deployments', slug);
  // Where focus goes when an action removes its own button (a canary promoted, the deployment
  // stopped): the traffic it changed.
  const trafficHeading = useRef<HTMLHeadingElement>(null);
  const [events, setEvents] = useState<Bounded<DeploymentEvent>>(emptyBounded);
  const deployment = data?.project?.deployment;
  const deploymentId = deployment?.id;

  useEffect(() => setEvents(emptyBounded()), [deploymentId]);

  // An event says the deployment changed: read it again, once per burst of events.
  const refresh = useMemo(() => coalesce(() => refetch({ requestPolicy: 'network-only' }), REFETCH_COALESCE_MS), [refetch]);
  useEffect(() => () => refresh.cancel(), [refresh]);
  const onEvent = useCallback(
    (each: DeploymentEvent) => {
      setEvents((old) => appendBounded(old, each, MAX_TIMELINE_EVENTS));
      refresh.request();
    },
    [refresh],
  );
  useEventStream({
    query: DeploymentEventsDocument,
    variables: { deploymentId: deploymentId ?? '', after: null },
    pause: !deploymentId || deployment?.state === 'STOPPED',
    pick: (result: DeploymentEventsSubscription) => result.deploymentEvents,
    cursor: { of: (each) => each.cursor, resume: (after) => ({ deploymentId: deploymentId ?? '', after }) },
    onEvent,
  });

  if (!deployment) {
    return (
      <PageGate query={{ data, error, fetching }} what="the deployment" notFound="Deployment not found" slug={slug}>
        There is no live deployment “{name}” in this project that you may see; a stopped one is no longer listed.
      </PageGate>
    );
  }
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const writable = !data?.project?.isArchived && deployment.state !== 'STOPPED';
  const traffic = deployment.traffic;

  const variables = { deployment: deployment.id };
  async function promoteCanary() {
    if (await action.run(() => promote(variables), (data) => data.promoteDeployment)) trafficHeading.current?.focus();
    refetch({ requestPolicy: 'network-only' });
  }
  async function rollBack() {
    await action.run(() => rollback(variables), (data) => data.rollbackDeployment);
    refetch({ requestPolicy: 'network-only' });
  }
  async function stopDeployment() {
    await action.run(() => stop(variables), (data) => data.deleteDeployment);
    refetch({ requestPolicy: 'network-only' });
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
      <h2 ref={trafficHeading} tabIndex={-1}>
        Traffic
      </h2>
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
      <ErrorMessage error={action.problem} />
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
              <button type="button" disabled={action.busy} onClick={() => void promoteCanary()}>
                Promote canary
              </button>
            )}
            <ConfirmButton
              question={
                deployment.previousStableVersion
                  ? `Roll ${deployment.name} back to version ${deployment.previousStableVersion.number}?`
                  : `Roll ${deployment.name} back?`
              }
              confirm="Yes, roll back"
              disabled={action.busy}
              onConfirm={rollBack}
              fallbackFocus={trafficHeading}
            >
              Roll back
            </ConfirmButton>
            {roleAtLeast(role, 'MAINTAINER') && (
              <ConfirmButton
                className="danger"
                question={`Stop ${deployment.name}? It stops serving, and is no longer listed.`}
                confirm={`Yes, stop ${deployment.name}`}
                disabled={action.busy}
                onConfirm={stopDeployment}
                fallbackFocus={trafficHeading}
              >
                Stop deployment
              </ConfirmButton>
            )}
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
        {events.dropped > 0 && <li className="muted">{events.dropped} earlier events are not shown.</li>}
        {events.rows.map((each) => (
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
