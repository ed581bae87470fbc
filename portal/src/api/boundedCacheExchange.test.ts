import { parse } from 'graphql';
import { Client, createRequest, fetchExchange, makeOperation, makeResult, type TypedDocumentNode } from 'urql';
import { describe, expect, it } from 'vitest';
import { boundedCacheExchange, ResultCache, typenamesOf } from './boundedCacheExchange';

interface NodeData {
  node: { __typename: string; id: string } | null;
}

// Parsed here rather than through codegen: a test document is not the portal's.
const NODE: TypedDocumentNode<NodeData, { id: string }> = parse('query TestNode($id: ID!) { node(id: $id) { id } }');
const RENAME: TypedDocumentNode<NodeData, { id: string }> = parse('mutation TestRename($id: ID!) { node: rename(id: $id) { id } }');

/** A GraphQL server that answers every query with the node asked, and counts the queries. */
function fakeServer() {
  const asked: string[] = [];
  const fetch = async (_input: RequestInfo | URL, init?: RequestInit) => {
    const body = JSON.parse(String(init?.body)) as { query: string; variables: { id: string } };
    asked.push(`${body.query.trim().split(/\s/)[0]} ${body.variables.id}`);
    return new Response(JSON.stringify({ data: { node: { __typename: 'Job', id: body.variables.id } } }), {
      headers: { 'content-type': 'application/json' },
    });
  };
  const client = new Client({ url: 'http://portal.test/graphql', fetch, exchanges: [boundedCacheExchange(2), fetchExchange] });
  const read = (id: string) => client.query(NODE, { id }, { requestPolicy: 'cache-first' }).toPromise();
  return { asked, client, read };
}

describe('the bounded document cache', () => {
  it('answers a query asked again from the cache', async () => {
    const server = fakeServer();
    expect((await server.read('1')).data?.node?.id).toBe('1');
    expect((await server.read('1')).data?.node?.id).toBe('1');
    expect(server.asked).toEqual(['query 1']);
  });

  it('forgets the least recently used result past its bound', async () => {
    const server = fakeServer();
    await server.read('1');
    await server.read('2');
    await server.read('1'); // now the most recently used
    await server.read('3'); // forgets 2
    await server.read('1');
    await server.read('3');
    await server.read('2');
    expect(server.asked).toEqual(['query 1', 'query 2', 'query 3', 'query 2']);
  });

  it('forgets the results a mutation makes stale, by their typenames', async () => {
    const server = fakeServer();
    await server.read('1');
    await server.client.mutation(RENAME, { id: '1' }).toPromise();
    await server.read('1');
    expect(server.asked).toEqual(['query 1', 'mutation 1', 'query 1']);
  });
});

describe('its parts', () => {
  it('keeps at most its bound, telling what it forgets', () => {
    const forgotten: number[] = [];
    const cache = new ResultCache(100, (key) => forgotten.push(key));
    const result = makeResult(makeOperation('query', createRequest(NODE, { id: '1' }), { url: '/graphql', requestPolicy: 'cache-first' }), { data: null });
    for (let key = 0; key < 1_000; key += 1) cache.set(key, result);
    expect(cache.size).toBe(100);
    expect(forgotten).toHaveLength(900);
    expect(cache.has(999) && !cache.has(899)).toBe(true);
  });

  it('finds every typename of a result', () => {
    const data = { project: { __typename: 'Project', jobs: [{ __typename: 'TrainingJob', model: { __typename: 'Model' } }] } };
    expect([...typenamesOf(data)].sort()).toEqual(['Model', 'Project', 'TrainingJob']);
  });
});
