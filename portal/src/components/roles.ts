// Which controls to show for the viewer's role in a project. Only a convenience: the API
// decides every request again (docs/access-control.md).
import type { ProjectRole } from '../gql/graphql';

const ORDER: ProjectRole[] = ['VIEWER', 'DEVELOPER', 'MAINTAINER', 'OWNER'];

/** An admin who is no member has a null role, and may do everything. */
export function effectiveRole(viewerRole: ProjectRole | null | undefined, isAdmin: boolean): ProjectRole | null {
  if (isAdmin) return 'OWNER';
  return viewerRole ?? null;
}

export function roleAtLeast(role: ProjectRole | null, needed: ProjectRole): boolean {
  return role !== null && ORDER.indexOf(role) >= ORDER.indexOf(needed);
}

export const PROJECT_ROLES = ORDER;
