import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useClient, useMutation, useQuery } from 'urql';
import { appendBounded, emptyBounded, type Bounded } from '../api/bounded';
import { useEventStream } from '../api/useEventStream';
import { useMutationAction } from '../api/useMutationAction';
import { ConfirmButton } from '../components/ConfirmButton';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate, formatNumber } from '../components/format';
import { PageGate } from '../components/PageGate';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import { paths } from '../paths';
import type { JobEventsSubscription, JobState } from '../gql/graphql';
import { useSession } from '../session/SessionContext';
import { isTerminal, stateLabel } from '../training/jobStates';
import { LiveChart } from '../training/LiveChart';
import { MetricBuffer, type MetricValues } from '../training/metricBuffer';

const TrainingJobQuery = graphql(`
  query TrainingJob($id: ID!, $slug: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
    }
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        state
        attempt
        createdAt
        startedAt
        finishedAt
        reason
        cancelRequestedAt
        trainer
        target
        features
        hyperparameters
        validationFraction
        seed
        modelName
        metricKeys
        latestMetrics
        datasetVersion {
          id
          number
          dataset {
            id
            name
          }
        }
        modelVersion {
          id
          number
          metrics
          model {
            id
            name
          }
        }
      }
    }
  }
`);

const JobMetricQuery = graphql(`
  query JobMetricHistory($id: ID!, $key: String!, $maxPoints: Int!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: $maxPoints) {
          step
          value
        }
      }
    }
  }
`);

const JobMetricKeysQuery = graphql(`
  query JobMetricKeys($id: ID!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metricKeys
      }
    }
  }
`);

const JobEventsSubscriptionDocument = graphql(`
  subscription JobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) {
      cursor
      type
      state
      reason
      attempt
      step
      totalSteps
      epoch
      metrics
      examplesPerSecond
      etaSeconds
      modelVersion
    }
  }
`);

const CancelTrainingJobMutation = graphql(`
  mutation CancelTrainingJob($id: ID!) {
    cancelTrainingJob(id: $id) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
          cancelRequestedAt
        }
      }
      ...ErrorFields
    }
  }
`);

/** Each key's history is downsampled to this many buckets: enough for a chart's width. */
const HISTORY_POINTS = 1000;
/** The live timeline keeps its newest entries only: a job may run for days. */
const MAX_TIMELINE_EVENTS = 200;

type JobEvent = JobEventsSubscription['jobEvents'];

interface TimelineEntry {
  key: string;
  label: string;
  detail: string | null;
  at: string | null;
}

interface Progress {
  step: number;
  totalSteps: number | null;
  epoch: number | null;
  examplesPerSecond: number | null;
  etaSeconds: number | null;
}

function eventEntry(event: JobEvent): TimelineEntry | null {
  if (event.type === 'progress') return null;
  const label =
    event.type === 'state' && event.state
      ? stateLabel(event.state)
      : event.type === 'resumed'
        ? `Resumed from step ${event.step ?? '?'}`
        : event.type === 'checkpoint'
          ? `Checkpoint at step ${event.step ?? '?'}`
          : event.type === 'model'
            ? 'Model version registered'
            : event.type;
  return { key: event.cursor, label, detail: event.reason ?? null, at: null };
}

export default function JobPage() {
  const params = useParams();
  const slug = params.slug ?? '';
  const jobId = params.jobId ?? '';
  const { session } = useSession();
  const client = useClient();
  const [{ data, error, fetching }, refetch] = useQuery({ query: TrainingJobQuery, variables: { id: jobId, slug } });
  usePageTitle('Training job', slug);
  const [, cancel] = useMutation(CancelTrainingJobMutation);
  const cancellation = useMutationAction();
  const [problem, setProblem] = useState<unknown>(null);
  const buffer = useMemo(() => new MetricBuffer(), [jobId]);
  const [revision, setRevision] = useState(0);
  // Each round replays the whole recorded history: once on opening, again when the job ends
  // (the live stream sends at most one progress event a second; the history has every step).
  const [historyRound, setHistoryRound] = useState(0);
  const [replayedRound, setReplayedRound] = useState(-1);
  const replayed = replayedRound >= 0;
  const [events, setEvents] = useState<Bounded<TimelineEntry>>(emptyBounded);
  const [progress, setProgress] = useState<Progress | null>(null);
  const [liveState, setLiveState] = useState<JobState | null>(null);
  // The page stays mounted from one job to another: the timeline is the job's.
  useEffect(() => setEvents(emptyBounded()), [jobId]);

  const job = data?.node?.__typename === 'TrainingJob' ? data.node : null;
  const loadedId = job?.id;
  const title = useRef<HTMLHeadingElement>(null); // where focus goes once a cancel removes its button

  // The keys the job query answered: the first round charts them without asking again (one
  // round trip less before the chart draws); a later round, once the job has ended, asks anew.
  // Held in a ref: a later refetch of the job (a registered model) must not replay the history.
  const firstKeys = useRef<string[] | null>(null);
  firstKeys.current = job ? job.metricKeys : null;
  const keysKnown = job !== null;

  // First the recorded history of every metric, then the live stream on top of it.
  useEffect(() => {
    if (!loadedId || !keysKnown) return;
    let live = true;
    const metricKeys = async (): Promise<string[]> => {
      if (historyRound === 0) return firstKeys.current ?? [];
      const keysResult = await client.query(JobMetricKeysQuery, { id: loadedId }, { requestPolicy: 'network-only' }).toPromise();
      if (keysResult.error) throw keysResult.error;
      const node = keysResult.data?.node;
      return node?.__typename === 'TrainingJob' ? node.metricKeys : [];
    };
    const history = async () => {
      const keys = await metricKeys();
      return Promise.all(
        keys.map(async (key) => {
          const result = await client.query(JobMetricQuery, { id: loadedId, key, maxPoints: HISTORY_POINTS }, { requestPolicy: 'network-only' }).toPromise();
          if (result.error) throw result.error;
          const each = result.data?.node;
          return [key, each?.__typename === 'TrainingJob' ? each.metrics : []] as const;
        }),
      );
    };
    history()
      .then((histories) => {
        if (!live) return;
        buffer.clear();
        buffer.replay(Object.fromEntries(histories));
        setRevision((n) => n + 1);
        setReplayedRound(historyRound);
      })
      .catch((failure: unknown) => {
        if (!live) return;
        setProblem(failure);
        setReplayedRound(historyRound);
      });
    return () => {
      live = false;
    };
  }, [loadedId, keysKnown, historyRound, client, buffer]);

  // Told once per event (the stream resumes from its last cursor after a reconnection).
  const onEvent = useCallback(
    (each: JobEvent) => {
      if (each.type === 'resumed' && typeof each.step === 'number') {
        buffer.truncateAfter(each.step);
        setRevision((n) => n + 1);
      }
      if (each.type === 'progress' && typeof each.step === 'number') {
        if (buffer.append(each.step, (each.metrics ?? {}) as MetricValues)) setRevision((n) => n + 1);
        setProgress({
          step: each.step,
          totalSteps: each.totalSteps ?? null,
          epoch: each.epoch ?? null,
          examplesPerSecond: each.examplesPerSecond ?? null,
          etaSeconds: each.etaSeconds ?? null,
        });
      }
      const entry = eventEntry(each);
      if (entry) {
        const dated = { ...entry, at: new Date().toISOString() };
        setEvents((old) => appendBounded(old, dated, MAX_TIMELINE_EVENTS));
      }
      if (each.type === 'state' && each.state) {
        setLiveState(each.state);
        if (isTerminal(each.state)) {
          refetch({ requestPolicy: 'network-only' });
          setHistoryRound((n) => n + 1);
        }
      }
      if (each.type === 'model') refetch({ requestPolicy: 'network-only' });
    },
    [buffer, refetch],
  );

  // Started once the first history is in, and kept while the job runs: a later replay round
  // does not resubscribe.
  const watching = replayed && job !== null && !isTerminal(job.state);
  const stream = useEventStream({
    query: JobEventsSubscriptionDocument,
    variables: { jobId, after: null },
    pause: !watching,
    pick: (result: JobEventsSubscription) => result.jobEvents,
    cursor: { of: (each) => each.cursor, resume: (after) => ({ jobId, after }) },
    onEvent,
  });

  if (!job) {
    return (
      <PageGate query={{ data, error, fetching }} what="the job" notFound="Job not found" slug={slug}>
        There is no training job here that you may see.
      </PageGate>
    );
  }

  const state = job.state !== 'QUEUED' && job.state !== 'RUNNING' ? job.state : (liveState ?? job.state);
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const canCancel = roleAtLeast(role, 'DEVELOPER') && !isTerminal(state) && !job.cancelRequestedAt && !data?.project?.isArchived;

  async function cancelJob() {
    if (!job) return;
    const id = job.id;
    await cancellation.run(() => cancel({ id }), (data) => data.cancelTrainingJob);
    refetch({ requestPolicy: 'network-only' });
  }

  const recorded: TimelineEntry[] = [
    { key: 'created', label: 'Queued', detail: null, at: job.createdAt },
    ...(job.startedAt ? [{ key: 'started', label: 'Started', detail: null, at: job.startedAt }] : []),
    ...(job.cancelRequestedAt ? [{ key: 'cancel', label: 'Cancel requested', detail: null, at: job.cancelRequestedAt }] : []),
    ...(job.finishedAt ? [{ key: 'finished', label: stateLabel(job.state), detail: job.reason ?? null, at: job.finishedAt }] : []),
  ];
  const latest = (job.latestMetrics ?? {}) as Record<string, unknown>;

  return (
    <section>
      <ProjectNav slug={slug} />
      <h1 ref={title} tabIndex={-1}>
        Training job: {job.modelName} <span className={`state state-${state.toLowerCase()}`}>{stateLabel(state)}</span>
      </h1>
      <p className="muted">
        {job.trainer} predicting <strong>{job.target}</strong>
        {job.datasetVersion && (
          <>
            {' '}
            from{' '}
            <Link to={paths.dataset(slug, job.datasetVersion.dataset.name)}>
              {job.datasetVersion.dataset.name} v{job.datasetVersion.number}
            </Link>
          </>
        )}
        {job.attempt > 1 && ` · attempt ${job.attempt}`}
      </p>
      {job.reason && <p>Reason: {job.reason}</p>}
      <ErrorMessage error={problem} />
      <ErrorMessage error={cancellation.problem} />
      {stream.error && <ErrorMessage error={stream.error} />}
      {canCancel && (
        <ConfirmButton
          className="danger"
          question={`Cancel the training of ${job.modelName}? A queued job never runs; a running one stops within a few steps.`}
          confirm="Yes, cancel the job"
          dismiss="Keep the job"
          disabled={cancellation.busy}
          onConfirm={cancelJob}
          fallbackFocus={title}
        >
          Cancel job
        </ConfirmButton>
      )}
      {progress && (
        <p>
          <progress aria-label="Training progress" max={progress.totalSteps ?? undefined} value={progress.step} /> Step {progress.step}
          {progress.totalSteps !== null && ` of ${progress.totalSteps}`}
          {progress.epoch !== null && `, epoch ${progress.epoch}`}
          {progress.examplesPerSecond !== null && `, ${formatNumber(progress.examplesPerSecond)} examples/s`}
          {progress.etaSeconds !== null && `, about ${Math.round(progress.etaSeconds)} s left`}
        </p>
      )}
      <h2>Loss and accuracy</h2>
      {!replayed ? <Loading what="the metric history" /> : <LiveChart buffer={buffer} revision={revision} />}
      {Object.keys(latest).length > 0 && (
        <>
          <h2>Latest metrics</h2>
          <dl className="facts">
            {Object.entries(latest).map(([key, value]) => (
              <div key={key}>
                <dt>{key}</dt>
                <dd>{formatNumber(value)}</dd>
              </div>
            ))}
          </dl>
        </>
      )}
      {job.modelVersion && (
        <p>
          Registered model version {job.modelVersion.model.name} v{job.modelVersion.number}.
        </p>
      )}
      <h2>Timeline</h2>
      <ol className="timeline" aria-label="State timeline">
        {recorded.map((entry) => (
          <li key={entry.key}>
            <strong>{entry.label}</strong> <time dateTime={entry.at ?? undefined}>{formatDate(entry.at)}</time>
            {entry.detail && <span className="muted"> {entry.detail}</span>}
          </li>
        ))}
        {events.dropped > 0 && (
          <li className="muted">{events.dropped} earlier live events are not shown; the recorded ones are above.</li>
        )}
        {events.rows.map((entry) => (
          <li key={entry.key}>
            <strong>{entry.label}</strong> <span className="muted">(live)</span>
            {entry.detail && <span className="muted"> {entry.detail}</span>}
          </li>
        ))}
      </ol>
      <h2>Hyperparameters</h2>
      <dl className="facts">
        {Object.entries((job.hyperparameters ?? {}) as Record<string, unknown>).map(([key, value]) => (
          <div key={key}>
            <dt>{key}</dt>
            <dd>{formatNumber(value)}</dd>
          </div>
        ))}
        <div>
          <dt>validation fraction</dt>
          <dd>{job.validationFraction}</dd>
        </div>
        <div>
          <dt>seed</dt>
          <dd>{job.seed}</dd>
        </div>
      </dl>
    </section>
  );
}
