import { useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { graphql } from '../gql';

const ProjectsQuery = graphql(`
  query Projects {
    projects(first: 100) {
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

export function ProjectsPage() {
  const [{ data, error, fetching }] = useQuery({ query: ProjectsQuery });
  const [creation, createProject] = useMutation(CreateProjectMutation);
  const [slug, setSlug] = useState('');
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [problem, setProblem] = useState<unknown>(null);
  const navigate = useNavigate();

  async function create(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const result = await createProject({ input: { slug, name, description } });
    const answer = result.data?.createProject;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'CreateProjectSuccess') navigate(`/projects/${answer.project.slug}`);
    else setProblem(resultError(answer));
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
                <Link to={`/projects/${project.slug}`}>{project.name}</Link>
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
        <ErrorMessage error={problem} />
        <button type="submit" disabled={creation.fetching}>
          Create project
        </button>
      </form>
    </section>
  );
}
