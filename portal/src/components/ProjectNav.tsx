import { Link, NavLink } from 'react-router-dom';
import { paths } from '../paths';

/** The project's own pages, under the main navigation. */
export function ProjectNav({ slug }: { slug: string }) {
  return (
    <>
      <p className="breadcrumb">
        <Link to={paths.projects()}>Projects</Link> / <Link to={paths.project(slug)}>{slug}</Link>
      </p>
      <nav aria-label="Project" className="subnav">
        <NavLink to={paths.project(slug)} end>
          Members
        </NavLink>
        <NavLink to={paths.datasets(slug)}>Datasets</NavLink>
        <NavLink to={paths.jobs(slug)}>Training jobs</NavLink>
        <NavLink to={paths.models(slug)}>Models</NavLink>
        <NavLink to={paths.deployments(slug)}>Deployments</NavLink>
        <NavLink to={paths.audit(slug)}>Audit log</NavLink>
      </nav>
    </>
  );
}
