import { useRef, useState, type DragEvent, type FormEvent } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useQuery } from 'urql';
import type { UploadedVersion } from '../api/upload';
import { useDatasetUpload } from '../api/useDatasetUpload';
import { ErrorMessage } from '../components/ErrorMessage';
import { PageGate } from '../components/PageGate';
import { usePageTitle } from '../components/usePageTitle';
import { formatBytes, formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { usePages } from '../api/pagination';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import { paths } from '../paths';
import { useSession } from '../session/SessionContext';

const ProjectDatasetsQuery = graphql(`
  query ProjectDatasets($slug: String!, $after: String) {
    project(slug: $slug) {
      id
      slug
      name
      isArchived
      viewerRole
      datasets(first: 100, after: $after) {
        pageInfo {
          hasNextPage
          endCursor
        }
        nodes {
          id
          name
          description
          createdAt
          latestVersion {
            id
            number
            rowCount
            sizeBytes
            createdAt
          }
        }
      }
    }
  }
`);

function UploadForm({ slug, names, onUploaded }: { slug: string; names: string[]; onUploaded: () => void }) {
  const { session } = useSession();
  const [dataset, setDataset] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [problem, setProblem] = useState<unknown>(null);
  const [uploaded, setUploaded] = useState<(UploadedVersion & { dataset: string }) | null>(null);
  const [dragging, setDragging] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const startUpload = useDatasetUpload();

  function choose(chosen: File | undefined) {
    if (!chosen) return;
    setFile(chosen);
    setUploaded(null);
    setProblem(null);
    // A new dataset is named after its file unless the user named it.
    if (!dataset) setDataset(chosen.name.replace(/\.[^.]+$/, '').toLowerCase().replace(/[^a-z0-9_-]+/g, '-'));
  }

  function drop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    choose(event.dataTransfer.files[0]);
  }

  async function upload(event: FormEvent) {
    event.preventDefault();
    if (!file || !session) return;
    setProblem(null);
    setUploaded(null);
    setProgress(0);
    try {
      const answer = await startUpload({ project: slug, dataset, file, onProgress: setProgress });
      setUploaded({ ...answer, dataset });
      setFile(null);
      if (picker.current) picker.current.value = '';
      onUploaded();
    } catch (error) {
      setProblem(error);
    } finally {
      setProgress(null);
    }
  }

  return (
    <form onSubmit={upload} className="panel stack" aria-labelledby="upload-heading">
      <h2 id="upload-heading">Upload a dataset</h2>
      <label>
        Dataset name
        <input required list="dataset-names" value={dataset} onChange={(e) => setDataset(e.target.value)} />
      </label>
      <datalist id="dataset-names">
        {names.map((name) => (
          <option key={name} value={name} />
        ))}
      </datalist>
      <div
        className={dragging ? 'dropzone dragging' : 'dropzone'}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
      >
        <p>Drop a CSV, Parquet or image archive here, or choose a file.</p>
        <label>
          File
          <input ref={picker} type="file" onChange={(e) => choose(e.target.files?.[0])} />
        </label>
        {file && (
          <p>
            Chosen: <strong>{file.name}</strong> ({formatBytes(file.size)})
          </p>
        )}
      </div>
      {progress !== null && (
        <p>
          <progress aria-label="Upload progress" max={1} value={progress} /> {Math.round(progress * 100)} %
        </p>
      )}
      <ErrorMessage error={problem} />
      {uploaded && (
        <p role="status" className="notice">
          {uploaded.created ? 'Uploaded' : 'Already there (same content):'} version {uploaded.version.number} of{' '}
          <Link to={paths.dataset(slug, uploaded.dataset)}>{uploaded.dataset}</Link>,{' '}
          {uploaded.version.rowCount} rows.
        </p>
      )}
      <button type="submit" disabled={!file || progress !== null}>
        Upload
      </button>
    </form>
  );
}

export function DatasetsPage() {
  const slug = useParams().slug ?? '';
  const { session } = useSession();
  usePageTitle('Datasets', slug);
  const pages = usePages(slug);
  const [{ data, error, fetching }, refetch] = useQuery({ query: ProjectDatasetsQuery, variables: { slug, after: pages.after } });
  const project = data?.project;
  const role = effectiveRole(project?.viewerRole, session?.isAdmin ?? false);

  if (!project) {
    return (
      <PageGate query={{ data, error, fetching }} what="datasets" notFound="Project not found">
        There is no project “{slug}” that you may see.
      </PageGate>
    );
  }
  const datasets = project.datasets.nodes;
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Datasets</h1>
      {error && <ErrorMessage error={error} />}
      {datasets.length === 0 ? (
        <p>This project has no dataset yet.</p>
      ) : (
        <div className="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Latest version</th>
                <th scope="col">Rows</th>
                <th scope="col">Size</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {datasets.map((dataset) => (
                <tr key={dataset.id}>
                  <td>
                    <Link to={paths.dataset(slug, dataset.name)}>{dataset.name}</Link>
                  </td>
                  <td>{dataset.latestVersion ? `v${dataset.latestVersion.number}` : '—'}</td>
                  <td>{dataset.latestVersion?.rowCount ?? '—'}</td>
                  <td>{dataset.latestVersion ? formatBytes(dataset.latestVersion.sizeBytes) : '—'}</td>
                  <td>{formatDate(dataset.latestVersion?.createdAt ?? dataset.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager what="the datasets" pages={pages} info={project.datasets.pageInfo} />
      {roleAtLeast(role, 'DEVELOPER') && !project.isArchived && (
        <UploadForm slug={slug} names={datasets.map((d) => d.name)} onUploaded={() => refetch({ requestPolicy: 'network-only' })} />
      )}
    </section>
  );
}
