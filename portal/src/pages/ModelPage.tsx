import { useEffect, useState, type FormEvent } from 'react';
import { Link, useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatBytes, formatDate } from '../components/format';
import { ProjectNav } from '../components/ProjectNav';
import { effectiveRole, roleAtLeast } from '../components/roles';
import { graphql } from '../gql';
import { EvaluationView } from '../models/EvaluationView';
import { useSession } from '../session/SessionContext';

const ModelQuery = graphql(`
  query Model($slug: String!, $name: String!) {
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
        versions(first: 100) {
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

const SetGatesMutation = graphql(`
  mutation SetModelPromotionGates($model: ID!, $gates: JSON!) {
    setModelPromotionGates(model: $model, gates: $gates) {
      __typename
      ... on SetPromotionGatesSuccess {
        model {
          id
          promotionGates
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

function GatesEditor({ modelId, gates, onSaved }: { modelId: string; gates: unknown; onSaved: () => void }) {
  const saved = JSON.stringify(gates ?? [], null, 2);
  const [text, setText] = useState(saved);
  const [problem, setProblem] = useState<unknown>(null);
  const [state, save] = useMutation(SetGatesMutation);
  useEffect(() => setText(saved), [saved]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      return setProblem({ code: 'INVALID_JSON', message: `the gates are not JSON: ${error instanceof Error ? error.message : String(error)}` });
    }
    const result = await save({ model: modelId, gates: parsed });
    const answer = result.data?.setModelPromotionGates;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'SetPromotionGatesSuccess') onSaved();
    else setProblem(resultError(answer));
  }

  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby="gates-heading">
      <h2 id="gates-heading">Promotion gates</h2>
      <label>
        Promotion gates (JSON)
        <textarea
          className="code"
          rows={6}
          spellCheck={false}
          placeholder='[{"kind": "metric_threshold", "metric": "accuracy", "min": 0.8, "aliases": ["staging", "production"]}]'
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
      </label>
      <ErrorMessage error={problem} />
      <button type="submit" disabled={state.fetching}>
        Save promotion gates
      </button>
    </form>
  );
}

export function ModelPage() {
  const params = useParams();
  const slug = params.slug ?? '';
  const name = params.name ?? '';
  const { session } = useSession();
  const [{ data, error, fetching }, refetch] = useQuery({ query: ModelQuery, variables: { slug, name } });
  const [aliasState, setAlias] = useMutation(SetAliasMutation);
  const [chosen, setChosen] = useState<string | null>(null);
  const [alias, setAliasName] = useState('staging');
  const [aliasVersion, setAliasVersion] = useState('');
  const [problem, setProblem] = useState<unknown>(null);
  const [moved, setMoved] = useState<string | null>(null);

  const model = data?.project?.model;
  const versions = model?.versions.nodes ?? [];
  const newest = versions.reduce<(typeof versions)[number] | null>((best, each) => (!best || each.number > best.number ? each : best), null);
  useEffect(() => {
    if (!aliasVersion && newest) setAliasVersion(newest.id);
  }, [aliasVersion, newest]);

  if (fetching && !data) return <Loading what="the model" />;
  if (!data && error) return <ErrorMessage error={error} />;
  if (!model) {
    return (
      <section>
        <ProjectNav slug={slug} />
        <h1>Model not found</h1>
        <p>There is no model “{name}” in this project that you may see.</p>
      </section>
    );
  }
  const role = effectiveRole(data?.project?.viewerRole, session?.isAdmin ?? false);
  const writable = !data?.project?.isArchived;
  const shown = versions.find((each) => each.id === chosen) ?? newest;

  async function moveAlias(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setMoved(null);
    const result = await setAlias({ input: { version: aliasVersion, alias } });
    const answer = result.data?.setModelAlias;
    if (result.error || !answer) return setProblem(result.error);
    // A promotion gate's refusal is a ConflictError whose message says which check failed.
    if (answer.__typename === 'SetModelAliasSuccess') {
      setMoved(`${answer.alias.alias} now points at version ${versions.find((each) => each.id === aliasVersion)?.number ?? '?'}.`);
      refetch({ requestPolicy: 'network-only' });
    } else setProblem(resultError(answer));
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
          <ErrorMessage error={problem} />
          {moved && (
            <p role="status" className="notice">
              {moved}
            </p>
          )}
          <button type="submit" disabled={aliasState.fetching}>
            Move alias
          </button>
        </form>
      )}
      <h2>Versions</h2>
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
                  {each.job ? <Link to={`/projects/${slug}/jobs/${encodeURIComponent(each.job.id)}`}>training job</Link> : each.source.toLowerCase()}
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
      {shown && <EvaluationView metrics={shown.metrics} title={`Evaluation of version ${shown.number}`} />}
      {roleAtLeast(role, 'MAINTAINER') && writable ? (
        <GatesEditor modelId={model.id} gates={model.promotionGates} onSaved={() => refetch({ requestPolicy: 'network-only' })} />
      ) : (
        <>
          <h2>Promotion gates</h2>
          <pre tabIndex={0} className="code">{JSON.stringify(model.promotionGates ?? [], null, 2)}</pre>
        </>
      )}
    </section>
  );
}
