import { useState, type FormEvent } from 'react';
import { useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, PROJECT_ROLES, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import type { ProjectRole } from '../gql/graphql';
import { useSession } from '../session/SessionContext';

const ProjectQuery = graphql(`
  query Project($slug: String!) {
    project(slug: $slug) {
      id
      slug
      name
      description
      createdAt
      isArchived
      viewerRole
      members(first: 100) {
        nodes {
          role
          addedAt
          user {
            id
            username
            displayName
          }
        }
      }
    }
  }
`);

const AddMemberMutation = graphql(`
  mutation AddProjectMember($input: ProjectMemberInput!) {
    addProjectMember(input: $input) {
      __typename
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

const ChangeRoleMutation = graphql(`
  mutation ChangeProjectMemberRole($input: ProjectMemberInput!) {
    changeProjectMemberRole(input: $input) {
      __typename
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

const RemoveMemberMutation = graphql(`
  mutation RemoveProjectMember($input: RemoveProjectMemberInput!) {
    removeProjectMember(input: $input) {
      __typename
      ... on Error {
        code
        message
      }
    }
  }
`);

function roleName(role: ProjectRole): string {
  return role.charAt(0) + role.slice(1).toLowerCase();
}

export function ProjectPage() {
  const slug = useParams().slug ?? '';
  const { session } = useSession();
  const [{ data, error, fetching }, refetch] = useQuery({ query: ProjectQuery, variables: { slug } });
  const [, addMember] = useMutation(AddMemberMutation);
  const [, changeRole] = useMutation(ChangeRoleMutation);
  const [, removeMember] = useMutation(RemoveMemberMutation);
  const [username, setUsername] = useState('');
  const [newRole, setNewRole] = useState<ProjectRole>('VIEWER');
  const [problem, setProblem] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const project = data?.project;
  const role = effectiveRole(project?.viewerRole, session?.isAdmin ?? false);
  const canManage = roleAtLeast(role, 'MAINTAINER') && !project?.isArchived;
  const canManageOwners = roleAtLeast(role, 'OWNER');
  // Maintainers add and change members up to maintainer; only owners deal with owners.
  const assignable = PROJECT_ROLES.filter((each) => each !== 'OWNER' || canManageOwners);

  async function run(change: () => Promise<{ error?: unknown; data?: unknown }>, pick: (data: never) => { __typename?: string } | undefined) {
    setProblem(null);
    setBusy(true);
    try {
      const result = await change();
      const answer = result.data ? pick(result.data as never) : undefined;
      if (result.error) setProblem(result.error);
      else setProblem(resultError(answer));
      refetch({ requestPolicy: 'network-only' });
      return !result.error && !resultError(answer);
    } finally {
      setBusy(false);
    }
  }

  async function add(event: FormEvent) {
    event.preventDefault();
    if (!project) return;
    const done = await run(
      () => addMember({ input: { project: project.id, username, role: newRole } }),
      (d: { addProjectMember: { __typename?: string } }) => d.addProjectMember,
    );
    if (done) setUsername('');
  }

  if (fetching && !data) return <Loading what="the project" />;
  // A failed refresh of a page already shown is said on it, not instead of it.
  if (error && !data) return <ErrorMessage error={error} />;
  if (!project) {
    return (
      <section>
        <h1>Project not found</h1>
        <p>There is no project “{slug}” that you may see.</p>
      </section>
    );
  }

  return (
    <section>
      <ProjectNav slug={project.slug} />
      <h1>{project.name}</h1>
      {error && <ErrorMessage error={error} />}
      <p className="muted">
        <code>{project.slug}</code> · your role: {role ? roleName(role) : 'none'} · created {formatDate(project.createdAt)}
        {project.isArchived && ' · archived (read-only)'}
      </p>
      {project.description && <p>{project.description}</p>}
      <h2>Members</h2>
      <ErrorMessage error={problem} />
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">Added</th>
              {canManage && (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {project.members.nodes.map((member) => {
              const name = member.user.username;
              const editable = canManage && (member.role !== 'OWNER' || canManageOwners);
              return (
                <tr key={member.user.id}>
                  <td>
                    {name}
                    {member.user.displayName && member.user.displayName !== name && <span className="muted"> ({member.user.displayName})</span>}
                  </td>
                  <td>
                    {editable ? (
                      <select
                        aria-label={`Role of ${name}`}
                        value={member.role}
                        disabled={busy}
                        onChange={(e) =>
                          void run(
                            () => changeRole({ input: { project: project.id, username: name, role: e.target.value as ProjectRole } }),
                            (d: { changeProjectMemberRole: { __typename?: string } }) => d.changeProjectMemberRole,
                          )
                        }
                      >
                        {assignable.map((each) => (
                          <option key={each} value={each}>
                            {roleName(each)}
                          </option>
                        ))}
                      </select>
                    ) : (
                      roleName(member.role)
                    )}
                  </td>
                  <td>{formatDate(member.addedAt)}</td>
                  {canManage && (
                    <td>
                      {editable && (
                        <button
                          type="button"
                          className="danger"
                          aria-label={`Remove ${name}`}
                          disabled={busy}
                          onClick={() =>
                            void run(
                              () => removeMember({ input: { project: project.id, username: name } }),
                              (d: { removeProjectMember: { __typename?: string } }) => d.removeProjectMember,
                            )
                          }
                        >
                          Remove
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {canManage && (
        <form onSubmit={add} className="panel stack" aria-labelledby="add-member-heading">
          <h2 id="add-member-heading">Add a member</h2>
          <div className="row">
            <label>
              New member's username
              <input required value={username} onChange={(e) => setUsername(e.target.value)} />
            </label>
            <label>
              New member's role
              <select value={newRole} onChange={(e) => setNewRole(e.target.value as ProjectRole)}>
                {assignable.map((each) => (
                  <option key={each} value={each}>
                    {roleName(each)}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <button type="submit" disabled={busy}>
            Add member
          </button>
        </form>
      )}
    </section>
  );
}
