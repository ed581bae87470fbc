import { useCallback, useState, type FormEvent } from 'react';
import { useParams } from 'react-router-dom';
import { useQuery } from 'urql';
import { emptyBounded, prependBounded, type Bounded } from '../api/bounded';
import { usePages } from '../api/pagination';
import { useEventStream } from '../api/useEventStream';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import type { AuditEventFieldsFragment, ProjectAuditEventsSubscription } from '../gql/graphql';
import { useSession } from '../session/SessionContext';

graphql(`
  fragment AuditEventFields on AuditEvent {
    id
    occurredAt
    actor
    action
    outcome
    objectType
    objectId
    requestId
    details
  }
`);

const AuditQuery = graphql(`
  query ProjectAudit($slug: String!, $actor: String, $action: String, $after: String) {
    project(slug: $slug) {
      id
      viewerRole
      auditEvents(first: 100, after: $after, actor: $actor, action: $action) {
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          ...AuditEventFields
        }
      }
    }
  }
`);

const AuditSubscription = graphql(`
  subscription ProjectAuditEvents($project: ID!) {
    projectAuditEvents(project: $project) {
      ...AuditEventFields
    }
  }
`);

/** The live rows above the first page keep the newest only: the log may be watched for days. */
const MAX_LIVE_ROWS = 200;

/** Short details inline; long ones folded, so the table stays readable. */
function AuditDetails({ details }: { details: unknown }) {
  const text = JSON.stringify(details);
  if (text.length <= 80) return <code className="details">{text}</code>;
  return (
    <details>
      <summary>
        <code className="details">{text.slice(0, 60)}…</code>
      </summary>
      <code className="details">{text}</code>
    </details>
  );
}

function matches(event: AuditEventFieldsFragment, actor: string, action: string): boolean {
  return (!actor || event.actor === actor) && (!action || event.action === action);
}

export function AuditPage() {
  const slug = useParams().slug ?? '';
  usePageTitle('Audit log', slug);
  const { session } = useSession();
  const [filters, setFilters] = useState({ actor: '', action: '' });
  const [actor, setActor] = useState('');
  const [action, setAction] = useState('');
  const pages = usePages(`${slug}\n${filters.actor}\n${filters.action}`);
  const [{ data, error, fetching }, refetch] = useQuery({
    query: AuditQuery,
    variables: { slug, actor: filters.actor || null, action: filters.action || null, after: pages.after },
    requestPolicy: 'network-only',
  });
  // The events committed since the page was read, newest first, above the first page.
  const [live, setLive] = useState<Bounded<AuditEventFieldsFragment>>(emptyBounded);
  const project = data?.project;
  const role = effectiveRole(project?.viewerRole, session?.isAdmin ?? false);
  const allowed = roleAtLeast(role, 'OWNER');

  const onEvent = useCallback((each: AuditEventFieldsFragment) => {
    setLive((old) => (old.rows.some((known) => known.id === each.id) ? old : prependBounded(old, each, MAX_LIVE_ROWS)));
  }, []);
  // Live on the first page only; a later page is read when it is shown. The stream takes no
  // cursor: after a lost connection the page is read again, for the events it missed.
  useEventStream({
    query: AuditSubscription,
    variables: { project: project?.id ?? '' },
    pause: !project || !allowed || pages.number !== 1,
    pick: (result: ProjectAuditEventsSubscription) => result.projectAuditEvents,
    onEvent,
    onReconnected: () => refetch({ requestPolicy: 'network-only' }),
  });

  function apply(event: FormEvent) {
    event.preventDefault();
    setLive(emptyBounded());
    setFilters({ actor: actor.trim(), action: action.trim() });
  }

  if (fetching && !data) return <Loading what="the audit log" />;
  const recorded = project?.auditEvents.nodes ?? [];
  const known = new Set(recorded.map((each) => each.id));
  const fresh = pages.number === 1 ? live.rows.filter((each) => !known.has(each.id) && matches(each, filters.actor, filters.action)) : [];
  const rows = [...fresh, ...recorded];
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Audit log</h1>
      {!data && error && <ErrorMessage error={error} />}
      {data && !allowed && <p>Only the project's owners and admins read its audit log.</p>}
      {data && error && allowed && <ErrorMessage error={error} />}
      {allowed && (
        <>
          <form onSubmit={apply} className="panel row" aria-label="Filter the audit log">
            <label>
              Actor
              <input value={actor} onChange={(e) => setActor(e.target.value)} placeholder="any" />
            </label>
            <label>
              Action
              <input value={action} onChange={(e) => setAction(e.target.value)} placeholder="any, e.g. dataset.upload" />
            </label>
            <button type="submit">Filter</button>
          </form>
          <p className="muted">Newest first; new events appear as they happen.</p>
          {pages.number === 1 && live.dropped > 0 && (
            <p className="muted">
              Only the newest {MAX_LIVE_ROWS} live events are shown above the log; reload it to page through the {live.dropped} older ones.
            </p>
          )}
          <div className="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Object</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              {/* Not a live region: a table body read out on every refresh says nothing usable. */}
              <tbody>
                {rows.map((each) => (
                  <tr key={each.id}>
                    <td>{formatDate(each.occurredAt)}</td>
                    <td>{each.actor ?? '—'}</td>
                    <td>
                      <code>{each.action}</code>
                    </td>
                    <td className={each.outcome === 'success' ? 'ok' : 'error'}>{each.outcome}</td>
                    <td>{each.objectType ? `${each.objectType} ${each.objectId ?? ''}` : '—'}</td>
                    <td>
                      <AuditDetails details={each.details} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager what="the audit log" pages={pages} info={project?.auditEvents.pageInfo} />
        </>
      )}
    </section>
  );
}
