import { useEffect, useState, type FormEvent } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage } from '../components/ErrorMessage';
import { PageGate } from '../components/PageGate';
import { usePageTitle } from '../components/usePageTitle';
import { formatBytes, formatDate } from '../components/format';
import { Pager } from '../components/Pager';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { usePages } from '../api/pagination';
import { graphql } from '../gql';
import { paths } from '../paths';
import { EvaluationView } from '../models/EvaluationView';
import { PromotionGatesEditor } from '../models/PromotionGatesEditor';
import { useSession } from '../session/SessionContext';

const ModelQuery = graphql(`
  query Model($slug: String!, $name: String!, $after: String) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
      model(name: $name) {
        id
        name
        description
        createdAt
        promotionGates
        aliases {
          alias
          updatedAt
          version {
            id
            number
          }
        }
        latestVersion {
          id
        }
        versions(first: 100, after: $after) {
          pageInfo {
            hasNextPage
            endCursor
          }
          nodes {
            id
            number
            source
            trainer
            format
            sizeBytes
            createdAt
            metrics
            aliases
            job {
              id
            }
            datasetVersion {
              id
              number
              dataset {
                id
                name
              }
            }
          }
        }
      }
    }
  }
`);

const SetAliasMutation = graphql(`
  mutation SetModelAlias($input: SetModelAliasInput!) {
    setModelAlias(input: $input) {
      __typename
      ... on SetModelAliasSuccess {
        alias {
          alias
        }
      }
      ...ErrorFields
    }
  }
`);

export function ModelPage() {
  const params = useParams();
  const slug = params.slug ?? '';
  const name = params.name ?? '';
  const { session } = useSession();
  // The API lists versions oldest first: the pages walk towards the newest.
  const pages = usePages(`${slug}\n${name}`);
  const [{ data, error, fetching }, refetch] = useQuery({ query: ModelQuery, variables: { slug, name, after: pages.after } });
  usePageTitle(name, 'Models', slug);
  const [, setAlias] = useMutation(SetAliasMutation);
  const aliasAction = useMutationAction();
  const [chosen, setChosen] = useState<string | null>(null);
  const [alias, setAliasName] = useState('staging');
  const [aliasVersion, setAliasVersion] = useState('');
  const [moved, setMoved] = useState<string | null>(null);

  const model = data?.project?.model;
  const versions = model?.versions.nodes ?? [];
  // The model's latest version if this page holds it, else this page's newest.
  const newest =
    versions.find((each) => each.id === model?.latestVersion?.id) ??
    versions.reduce<(typeof versions)[number] | null>((best, each) => (!best || each.number > best.number ? each : best), null);
  useEffect(() => {
    if (!aliasVersion && newest) setAliasVersion(newest.id);
  }, [aliasVersion, newest]);

  if (!model) {
    return (
      <PageGate query={{ data, error, fetching }} what="the model" notFound="Model not found" slug={slug}>
        There is no model “{name}” in this project that you may see.
      </PageGate>
    );
  }
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const writable = !data?.project?.isArchived;
  const shown = versions.find((each) => each.id === chosen) ?? newest;

  async function moveAlias(event: FormEvent) {
    event.preventDefault();
    setMoved(null);
    // A promotion gate's refusal is a ConflictError whose message says which check failed.
    const done = await aliasAction.run(() => setAlias({ input: { version: aliasVersion, alias } }), (data) => data.setModelAlias);
    if (!done) return;
    setMoved(`${done.alias.alias} now points at version ${versions.find((each) => each.id === aliasVersion)?.number ?? '?'}.`);
    refetch({ requestPolicy: 'network-only' });
  }

  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>{model.name}</h1>
      {model.description && <p>{model.description}</p>}
      <h2>Aliases</h2>
      {model.aliases.length === 0 ? (
        <p>No alias yet.</p>
      ) : (
        <ul>
          {model.aliases.map((each) => (
            <li key={each.alias}>
              <strong>{each.alias}</strong> → version {each.version.number} <span className="muted">(since {formatDate(each.updatedAt)})</span>
            </li>
          ))}
        </ul>
      )}
      {roleAtLeast(role, 'DEVELOPER') && writable && (
        <form onSubmit={moveAlias} className="panel stack" aria-labelledby="alias-heading">
          <h3 id="alias-heading">Move an alias</h3>
          <div className="row">
            <label>
              Alias
              <input required list="alias-names" value={alias} onChange={(e) => setAliasName(e.target.value)} />
            </label>
            <datalist id="alias-names">
              <option value="staging" />
              <option value="production" />
            </datalist>
            <label>
              Version
              <select value={aliasVersion} onChange={(e) => setAliasVersion(e.target.value)}>
                {versions.map((each) => (
                  <option key={each.id} value={each.id}>
                    version {each.number}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <ErrorMessage error={aliasAction.problem} />
          {moved && (
            <p role="status" className="notice">
              {moved}
            </p>
          )}
          <button type="submit" disabled={aliasAction.busy}>
            Move alias
          </button>
        </form>
      )}
      <h2>Versions</h2>
      <p className="muted">Oldest first, as the API lists them; the pages below lead to the newest.</p>
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Source</th>
              <th scope="col">Trainer</th>
              <th scope="col">Trained on</th>
              <th scope="col">Size</th>
              <th scope="col">Aliases</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((each) => (
              <tr key={each.id} aria-current={each.id === shown?.id ? 'true' : undefined}>
                <td>
                  <button type="button" className="link" aria-pressed={each.id === shown?.id} onClick={() => setChosen(each.id)}>
                    Version {each.number}
                  </button>
                </td>
                <td>
                  {each.job ? <Link to={paths.job(slug, each.job.id)}>training job</Link> : each.source.toLowerCase()}
                </td>
                <td>
                  {each.trainer} <span className="muted">({each.format})</span>
                </td>
                <td>{each.datasetVersion ? `${each.datasetVersion.dataset.name} v${each.datasetVersion.number}` : '—'}</td>
                <td className="num">{formatBytes(each.sizeBytes)}</td>
                <td>{each.aliases.join(', ') || '—'}</td>
                <td>{formatDate(each.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager what="the versions" pages={pages} info={model.versions.pageInfo} />
      {shown && <EvaluationView metrics={shown.metrics} title={`Evaluation of version ${shown.number}`} />}
      <PromotionGatesEditor modelId={model.id} gates={model.promotionGates} canEdit={roleAtLeast(role, 'MAINTAINER') && writable} />
    </section>
  );
}
