import type { ReactNode } from 'react';
import { ErrorMessage, Loading } from './ErrorMessage';
import { ProjectNav } from './ProjectNav';

/** As much of a urql query's state as a page's gate needs. */
export interface QueryState {
  fetching: boolean;
  data?: unknown;
  error?: unknown;
}

/** What a page shows instead of itself while the thing it is about is not there: loading, the
 * error that kept it from loading, or "not found". Rendered only when the page has nothing to
 * show (`if (!project) return <PageGate …/>`), so that the page's own code keeps the narrowed
 * type; a failed refresh of a page already shown is said on the page, not here. */
export function PageGate({
  query,
  what,
  notFound,
  slug,
  children,
}: {
  query: QueryState;
  /** What is loading, e.g. "the project". */
  what: string;
  /** The not-found heading, e.g. "Project not found". */
  notFound: string;
  /** The project whose navigation the not-found page keeps, when the project is there. */
  slug?: string;
  /** Why nothing was found, in a sentence. */
  children: ReactNode;
}) {
  if (query.fetching && !query.data) return <Loading what={what} />;
  if (!query.data && query.error) return <ErrorMessage error={query.error} />;
  return (
    <section>
      {slug !== undefined && <ProjectNav slug={slug} />}
      <h1>{notFound}</h1>
      <p>{children}</p>
    </section>
  );
}
