import { Link } from 'react-router-dom';
import { usePageTitle } from '../components/usePageTitle';
import { paths } from '../paths';

export function NotFoundPage() {
  usePageTitle('Page not found');
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is no page here. <Link to={paths.projects()}>Go to your projects</Link>.
      </p>
    </section>
  );
}
