import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage } from '../components/ErrorMessage';
import { PageGate } from '../components/PageGate';
import { formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { usePages } from '../api/pagination';
import { usePageTitle } from '../components/usePageTitle';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import { paths } from '../paths';
import { useSession } from '../session/SessionContext';

const DeploymentsQuery = graphql(`
  query ProjectDeployments($slug: String!, $after: String) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
      deployments(first: 100, after: $after) {
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          id
          name
          state
          runtime
          createdAt
          traffic {
            stablePercent
            canaryPercent
            stableVersion {
              id
              number
              model {
                id
                name
              }
            }
            canaryVersion {
              id
              number
            }
          }
        }
      }
      models(first: 100) {
        nodes {
          id
          name
          versions(first: 100) {
            nodes {
              id
              number
            }
          }
        }
      }
    }
  }
`);

const CreateDeploymentMutation = graphql(`
  mutation CreateDeployment($input: CreateDeploymentInput!) {
    createDeployment(input: $input) {
      __typename
      ... on DeploymentSuccess {
        deployment {
          id
          name
          state
        }
      }
      ...ErrorFields
    }
  }
`);

export function DeploymentsPage() {
  const slug = useParams().slug ?? '';
  const navigate = useNavigate();
  const { session } = useSession();
  const pages = usePages(slug);
  const [{ data, error, fetching }] = useQuery({ query: DeploymentsQuery, variables: { slug, after: pages.after } });
  usePageTitle('Deployments', slug);
  const [, create] = useMutation(CreateDeploymentMutation);
  const action = useMutationAction();
  const [name, setName] = useState('');
  const [version, setVersion] = useState('');

  const versions = useMemo(
    () =>
      (data?.project?.models.nodes ?? []).flatMap((model) =>
        [...model.versions.nodes].sort((a, b) => b.number - a.number).map((each) => ({ id: each.id, label: `${model.name} v${each.number}` })),
      ),
    [data],
  );
  useEffect(() => {
    if (!version && versions[0]) setVersion(versions[0].id);
  }, [version, versions]);

  const project = data?.project;
  if (!project) {
    return (
      <PageGate query={{ data, error, fetching }} what="deployments" notFound="Project not found">
        There is no project “{slug}” that you may see.
      </PageGate>
    );
  }
  const role = effectiveRole(project.viewerRole, session?.isAdmin ?? false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const made = await action.run(() => create({ input: { name, modelVersion: version } }), (data) => data.createDeployment);
    if (made) navigate(paths.deployment(slug, made.deployment.name));
  }

  const deployments = project.deployments.nodes;
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Deployments</h1>
      {deployments.length === 0 ? (
        <p>Nothing is deployed.</p>
      ) : (
        <div className="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Deployment</th>
                <th scope="col">State</th>
                <th scope="col">Serves</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {deployments.map((each) => (
                <tr key={each.id}>
                  <td>
                    <Link to={paths.deployment(slug, each.name)}>{each.name}</Link>
                  </td>
                  <td>
                    <span className={`state state-${each.state.toLowerCase()}`}>{each.state.toLowerCase()}</span>
                  </td>
                  <td>
                    {each.traffic.stableVersion.model.name} v{each.traffic.stableVersion.number} ({each.traffic.stablePercent} %)
                    {each.traffic.canaryVersion && `, canary v${each.traffic.canaryVersion.number} (${each.traffic.canaryPercent} %)`}
                  </td>
                  <td>{formatDate(each.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager what="the deployments" pages={pages} info={project.deployments.pageInfo} />
      {roleAtLeast(role, 'DEVELOPER') && !project.isArchived && (
        <form onSubmit={submit} className="panel stack" aria-labelledby="deploy-heading">
          <h2 id="deploy-heading">New deployment</h2>
          {versions.length === 0 ? (
            <p>Train or upload a model first.</p>
          ) : (
            <>
              <div className="row">
                <label>
                  Deployment name
                  <input required value={name} onChange={(e) => setName(e.target.value)} />
                </label>
                <label>
                  Model version
                  <select value={version} onChange={(e) => setVersion(e.target.value)}>
                    {versions.map((each) => (
                      <option key={each.id} value={each.id}>
                        {each.label}
                      </option>
                    ))}
                  </select>
                </label>
              </div>
              <ErrorMessage error={action.problem} />
              <button type="submit" disabled={action.busy}>
                Deploy
              </button>
            </>
          )}
        </form>
      )}
    </section>
  );
}
