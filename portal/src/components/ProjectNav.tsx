import { Link, NavLink } from 'react-router-dom';

/** The project's own pages, under the main navigation. */
export function ProjectNav({ slug }: { slug: string }) {
  return (
    <>
      <p className="breadcrumb">
        <Link to="/projects">Projects</Link> / <Link to={`/projects/${slug}`}>{slug}</Link>
      </p>
      <nav aria-label="Project" className="subnav">
        <NavLink to={`/projects/${slug}`} end>
          Members
        </NavLink>
        <NavLink to={`/projects/${slug}/datasets`}>Datasets</NavLink>
        <NavLink to={`/projects/${slug}/jobs`}>Training jobs</NavLink>
        <NavLink to={`/projects/${slug}/models`}>Models</NavLink>
        <NavLink to={`/projects/${slug}/deployments`}>Deployments</NavLink>
        <NavLink to={`/projects/${slug}/audit`}>Audit log</NavLink>
      </nav>
    </>
  );
}
