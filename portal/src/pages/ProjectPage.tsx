import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ConfirmButton } from '../components/ConfirmButton';
import { ErrorMessage } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { PageGate } from '../components/PageGate';
import { ProjectNav } from '../components/ProjectNav';
import { usePageTitle } from '../components/usePageTitle';
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
      ...ErrorFields
    }
  }
`);

const ChangeRoleMutation = graphql(`
  mutation ChangeProjectMemberRole($input: ProjectMemberInput!) {
    changeProjectMemberRole(input: $input) {
      __typename
      ...ErrorFields
    }
  }
`);

const RemoveMemberMutation = graphql(`
  mutation RemoveProjectMember($input: RemoveProjectMemberInput!) {
    removeProjectMember(input: $input) {
      __typename
      ...ErrorFields
    }
  }
`);

function roleName(role: ProjectRole): string {
  return role.charAt(0) + role.slice(1).toLowerCase();
}

/** A member's role, changed by an explicit choice: picking in the list (where arrow keys change
 * the value on some systems) only proposes; "Save role" applies it. */
function MemberRoleEditor({
  username,
  role,
  assignable,
  disabled,
  onSave,
}: {
  username: string;
  role: ProjectRole;
  assignable: ReadonlyArray<ProjectRole>;
  disabled: boolean;
  onSave: (role: ProjectRole) => Promise<boolean>;
}) {
  // Null: no change proposed, the list follows the member's role as the server has it.
  const [choice, setChoice] = useState<ProjectRole | null>(null);
  const select = useRef<HTMLSelectElement>(null);
  const changed = choice !== null && choice !== role;
  // The button goes once saved: focus goes back to the list it saved, once the list is enabled
  // again (it is disabled while the page's mutation runs).
  const [refocus, setRefocus] = useState(false);
  useEffect(() => {
    if (refocus && !disabled) {
      setRefocus(false);
      select.current?.focus();
    }
  }, [refocus, disabled]);

  async function save() {
    if (choice === null || !(await onSave(choice))) return;
    setChoice(null);
    setRefocus(true);
  }

  return (
    <span className="row">
      <select ref={select} aria-label={`Role of ${username}`} value={choice ?? role} disabled={disabled} onChange={(e) => setChoice(e.target.value as ProjectRole)}>
        {assignable.map((each) => (
          <option key={each} value={each}>
            {roleName(each)}
          </option>
        ))}
      </select>
      {changed && (
        <button type="button" aria-label={`Save role of ${username}`} disabled={disabled} onClick={() => void save()}>
          Save role
        </button>
      )}
    </span>
  );
}

export function ProjectPage() {
  const slug = useParams().slug ?? '';
  usePageTitle('Members', slug);
  const { session } = useSession();
  const [{ data, error, fetching }, refetch] = useQuery({ query: ProjectQuery, variables: { slug } });
  const [, addMember] = useMutation(AddMemberMutation);
  const [, changeRole] = useMutation(ChangeRoleMutation);
  const [, removeMember] = useMutation(RemoveMemberMutation);
  const [username, setUsername] = useState('');
  const [newRole, setNewRole] = useState<ProjectRole>('VIEWER');
  const action = useMutationAction();
  // Where focus goes when a removed member's row takes the focused control with it.
  const membersHeading = useRef<HTMLHeadingElement>(null);

  const project = data?.project;
  const role = effectiveRole(project?.viewerRole, session?.isAdmin ?? false);
  const canManage = roleAtLeast(role, 'MAINTAINER') && !project?.isArchived;
  const canManageOwners = roleAtLeast(role, 'OWNER');
  // Maintainers add and change members up to maintainer; only owners deal with owners.
  const assignable = PROJECT_ROLES.filter((each) => each !== 'OWNER' || canManageOwners);

  async function add(event: FormEvent) {
    event.preventDefault();
    if (!project) return;
    const input = { project: project.id, username, role: newRole };
    const done = await action.run(() => addMember({ input }), (data) => data.addProjectMember);
    refetch({ requestPolicy: 'network-only' });
    if (done) setUsername('');
  }

  async function saveRole(member: string, role: ProjectRole): Promise<boolean> {
    if (!project) return false;
    const input = { project: project.id, username: member, role };
    const done = await action.run(() => changeRole({ input }), (data) => data.changeProjectMemberRole);
    refetch({ requestPolicy: 'network-only' });
    return done !== null;
  }

  async function remove(member: string): Promise<void> {
    if (!project) return;
    const input = { project: project.id, username: member };
    await action.run(() => removeMember({ input }), (data) => data.removeProjectMember);
    refetch({ requestPolicy: 'network-only' });
  }

  if (!project) {
    return (
      <PageGate query={{ data, error, fetching }} what="the project" notFound="Project not found">
        There is no project “{slug}” that you may see.
      </PageGate>
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
      <h2 ref={membersHeading} tabIndex={-1}>
        Members
      </h2>
      <ErrorMessage error={action.problem} />
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
                      <MemberRoleEditor
                        username={name}
                        role={member.role}
                        assignable={assignable}
                        disabled={action.busy}
                        onSave={(chosen) => saveRole(name, chosen)}
                      />
                    ) : (
                      roleName(member.role)
                    )}
                  </td>
                  <td>{formatDate(member.addedAt)}</td>
                  {canManage && (
                    <td>
                      {editable && (
                        <ConfirmButton
                          className="danger"
                          label={`Remove ${name}`}
                          question={`Remove ${name} from ${project.name}?`}
                          confirm={`Yes, remove ${name}`}
                          disabled={action.busy}
                          onConfirm={() => remove(name)}
                          fallbackFocus={membersHeading}
                        >
                          Remove
                        </ConfirmButton>
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
          <button type="submit" disabled={action.busy}>
            Add member
          </button>
        </form>
      )}
    </section>
  );
}
