import { Link, useParams } from 'react-router-dom';
import { useQuery } from 'urql';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { usePages } from '../api/pagination';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
import { graphql } from '../gql';
import { paths } from '../paths';

const ProjectModelsQuery = graphql(`
  query ProjectModels($slug: String!, $after: String) {
    project(slug: $slug) {
      id
      models(first: 100, after: $after) {
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          id
          name
          createdAt
          latestVersion {
            id
            number
            createdAt
          }
          aliases {
            alias
            version {
              id
              number
            }
          }
        }
      }
    }
  }
`);

export function ModelsPage() {
  const slug = useParams().slug ?? '';
  usePageTitle('Models', slug);
  const pages = usePages(slug);
  const [{ data, error, fetching }] = useQuery({ query: ProjectModelsQuery, variables: { slug, after: pages.after } });
  if (fetching && !data) return <Loading what="models" />;
  if (!data && error) return <ErrorMessage error={error} />;
  const models = data?.project?.models.nodes ?? [];
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Models</h1>
      {models.length === 0 ? (
        <p>No model yet: a training job that succeeds registers one.</p>
      ) : (
        <div className="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Latest version</th>
                <th scope="col">Aliases</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {models.map((model) => (
                <tr key={model.id}>
                  <td>
                    <Link to={paths.model(slug, model.name)}>{model.name}</Link>
                  </td>
                  <td>{model.latestVersion ? `v${model.latestVersion.number}` : '—'}</td>
                  <td>{model.aliases.map((alias) => `${alias.alias} → v${alias.version.number}`).join(', ') || '—'}</td>
                  <td>{formatDate(model.latestVersion?.createdAt ?? model.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager what="the models" pages={pages} info={data?.project?.models.pageInfo} />
    </section>
  );
}
