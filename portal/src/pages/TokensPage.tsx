import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { graphql } from '../gql';

const ApiTokensQuery = graphql(`
  query ApiTokens {
    viewer {
      id
      username
      apiTokens {
        id
        name
        prefix
        kind
        createdAt
        lastUsedAt
        expiresAt
        revokedAt
      }
    }
  }
`);

const CreateApiTokenMutation = graphql(`
  mutation CreateApiToken($input: CreateApiTokenInput!) {
    createApiToken(input: $input) {
      __typename
      ... on CreateApiTokenSuccess {
        token
        apiToken {
          id
          name
          prefix
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

const RevokeApiTokenMutation = graphql(`
  mutation RevokeApiToken($id: ID!) {
    revokeApiToken(id: $id) {
      __typename
      ... on RevokeApiTokenSuccess {
        apiTokenId
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

export function TokensPage() {
  const [{ data, error, fetching }, refetch] = useQuery({ query: ApiTokensQuery });
  const [created, createToken] = useMutation(CreateApiTokenMutation);
  const [revoked, revokeToken] = useMutation(RevokeApiTokenMutation);
  const [name, setName] = useState('');
  const [expiresAt, setExpiresAt] = useState('');
  const [secret, setSecret] = useState<{ name: string; token: string } | null>(null);
  const [problem, setProblem] = useState<unknown>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setSecret(null);
    const input = { name, expiresAt: expiresAt ? new Date(expiresAt).toISOString() : null };
    const result = await createToken({ input });
    const answer = result.data?.createApiToken;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'CreateApiTokenSuccess') {
      setSecret({ name: answer.apiToken.name, token: answer.token });
      setName('');
      setExpiresAt('');
      refetch({ requestPolicy: 'network-only' });
    } else setProblem(resultError(answer));
  }

  async function revoke(id: string) {
    setProblem(null);
    const result = await revokeToken({ id });
    const answer = result.data?.revokeApiToken;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename !== 'RevokeApiTokenSuccess') setProblem(resultError(answer));
    refetch({ requestPolicy: 'network-only' });
  }

  const tokens = data?.viewer.apiTokens ?? [];
  return (
    <section>
      <h1>API tokens</h1>
      <p className="muted">
        Tokens let scripts and the Python client act as you. A token's secret is shown once, when it is made.
      </p>
      <form onSubmit={create} className="panel stack" aria-labelledby="new-token-heading">
        <h2 id="new-token-heading">New token</h2>
        <div className="row">
          <label>
            Token name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <label>
            Expires (optional)
            <input type="datetime-local" value={expiresAt} onChange={(e) => setExpiresAt(e.target.value)} />
          </label>
        </div>
        <button type="submit" disabled={created.fetching}>
          Create token
        </button>
      </form>
      {secret && (
        <section className="panel notice" aria-labelledby="secret-heading">
          <h2 id="secret-heading">Token “{secret.name}” created</h2>
          <p>Copy its secret now: it is not shown again.</p>
          <label>
            New token secret
            <input readOnly value={secret.token} onFocus={(e) => e.target.select()} />
          </label>
        </section>
      )}
      <ErrorMessage error={problem} />
      <h2>Your tokens</h2>
      <ErrorMessage error={error} />
      {fetching && !data && <Loading what="your tokens" />}
      {data && tokens.length === 0 && <p>You have no tokens yet.</p>}
      {tokens.length > 0 && (
        <div className="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Kind</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">Revoked</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.map((token) => (
                <tr key={token.id}>
                  <td>{token.name}</td>
                  <td>
                    <code>{token.prefix}</code>
                  </td>
                  <td>{token.kind}</td>
                  <td>{formatDate(token.createdAt)}</td>
                  <td>{token.lastUsedAt ? formatDate(token.lastUsedAt) : 'never'}</td>
                  <td>{token.expiresAt ? formatDate(token.expiresAt) : 'never'}</td>
                  <td>{token.revokedAt ? formatDate(token.revokedAt) : 'no'}</td>
                  <td>
                    {!token.revokedAt && (
                      <button
                        type="button"
                        className="danger"
                        aria-label={`Revoke token ${token.name}`}
                        disabled={revoked.fetching}
                        onClick={() => void revoke(token.id)}
                      >
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
