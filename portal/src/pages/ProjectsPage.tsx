import { useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { usePages } from '../api/pagination';
import { usePageTitle } from '../components/usePageTitle';
import { graphql } from '../gql';
import { paths } from '../paths';

const ProjectsQuery = graphql(`
  query Projects($after: String) {
    projects(first: 100, after: $after) {
      pageInfo {
        hasNextPage
        endCursor
      }
      nodes {
        id
        slug
        name
        description
        createdAt
        isArchived
        viewerRole
      }
    }
  }
`);

const CreateProjectMutation = graphql(`
  mutation CreateProject($input: CreateProjectInput!) {
    createProject(input: $input) {
      __typename
      ... on CreateProjectSuccess {
        project {
          id
          slug
        }
      }
      ...ErrorFields
    }
  }
`);

export function ProjectsPage() {
  const pages = usePages('projects');
  const [{ data, error, fetching }] = useQuery({ query: ProjectsQuery, variables: { after: pages.after } });
  usePageTitle('Projects');
  const [, createProject] = useMutation(CreateProjectMutation);
  const action = useMutationAction();
  const [slug, setSlug] = useState('');
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const navigate = useNavigate();

  async function create(event: FormEvent) {
    event.preventDefault();
    const made = await action.run(() => createProject({ input: { slug, name, description } }), (data) => data.createProject);
    if (made) navigate(paths.project(made.project.slug));
  }

  const projects = data?.projects.nodes ?? [];
  return (
    <section>
      <h1>Projects</h1>
      <ErrorMessage error={error} />
      {fetching && !data && <Loading what="projects" />}
      {data && projects.length === 0 && <p>You are in no project yet. Create one below.</p>}
      {projects.length > 0 && (
        <ul className="cards" aria-label="Your projects">
          {projects.map((project) => (
            <li key={project.id} className="panel">
              <h2>
                <Link to={paths.project(project.slug)}>{project.name}</Link>
              </h2>
              <p className="muted">
                <code>{project.slug}</code> · {project.viewerRole?.toLowerCase() ?? 'admin'} · created {formatDate(project.createdAt)}
                {project.isArchived && ' · archived'}
              </p>
              {project.description && <p>{project.description}</p>}
            </li>
          ))}
        </ul>
      )}
      <Pager what="your projects" pages={pages} info={data?.projects.pageInfo} />
      <form onSubmit={create} className="panel stack" aria-labelledby="new-project-heading">
        <h2 id="new-project-heading">New project</h2>
        <div className="row">
          <label>
            Slug
            <input
              required
              aria-describedby="slug-hint"
              value={slug}
              onChange={(e) => setSlug(e.target.value)}
            />
          </label>
          <label>
            Name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
        </div>
        <p id="slug-hint" className="muted">
          The slug names the project in URLs: lowercase letters, digits and hyphens, 1 to 63 characters.
        </p>
        <label>
          Description
          <textarea value={description} onChange={(e) => setDescription(e.target.value)} />
        </label>
        <ErrorMessage error={action.problem} />
        <button type="submit" disabled={action.busy}>
          Create project
        </button>
      </form>
    </section>
  );
}
