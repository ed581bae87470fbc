import { useRef, useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ConfirmButton } from '../components/ConfirmButton';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { formatDate } from '../components/format';
import { usePageTitle } from '../components/usePageTitle';
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
      ...ErrorFields
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
      ...ErrorFields
    }
  }
`);

export function TokensPage() {
  const [{ data, error, fetching }, refetch] = useQuery({ query: ApiTokensQuery });
  usePageTitle('API tokens');
  const [, createToken] = useMutation(CreateApiTokenMutation);
  const [, revokeToken] = useMutation(RevokeApiTokenMutation);
  const action = useMutationAction();
  // Where focus goes once a revoked token's button is gone: the list it changed.
  const listHeading = useRef<HTMLHeadingElement>(null);
  const [name, setName] = useState('');
  const [expiresAt, setExpiresAt] = useState('');
  const [secret, setSecret] = useState<{ name: string; token: string } | null>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    setSecret(null);
    const input = { name, expiresAt: expiresAt ? new Date(expiresAt).toISOString() : null };
    const made = await action.run(() => createToken({ input }), (data) => data.createApiToken);
    if (!made) return;
    setSecret({ name: made.apiToken.name, token: made.token });
    setName('');
    setExpiresAt('');
    refetch({ requestPolicy: 'network-only' });
  }

  async function revoke(id: string) {
    await action.run(() => revokeToken({ id }), (data) => data.revokeApiToken);
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
        <button type="submit" disabled={action.busy}>
          Create token
        </button>
      </form>
      {secret && (
        <section className="panel notice" aria-labelledby="secret-heading">
          <h2 id="secret-heading">Token “{secret.name}” created</h2>
          <p>Copy its secret now: it is not shown again.</p>
          <label>
            New token secret
            {/* Focused (and so selected) as it comes: the one thing to do next is copy it. */}
            <input readOnly autoFocus value={secret.token} onFocus={(e) => e.target.select()} />
          </label>
        </section>
      )}
      <ErrorMessage error={action.problem} />
      <h2 ref={listHeading} tabIndex={-1}>
        Your tokens
      </h2>
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
                      <ConfirmButton
                        className="danger"
                        label={`Revoke token ${token.name}`}
                        question={`Revoke ${token.name}? Scripts using it stop working.`}
                        confirm={`Yes, revoke ${token.name}`}
                        disabled={action.busy}
                        onConfirm={() => revoke(token.id)}
                        fallbackFocus={listHeading}
                      >
                        Revoke
                      </ConfirmButton>
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
