// urql's document cache, bounded. The stock `cacheExchange` keeps every query result it has
// seen, for as long as the page is open: each job opened, each metric history, each page of a
// list walked through stays in memory for a session of days. This one keeps the `maxResults`
// most recently used and forgets the oldest, and otherwise behaves as the stock one does (same
// request policies, a mutation invalidates the results holding its typenames and reruns those
// still watched). Not graphcache: the portal's pages read lists page by page and refetch what an
// event changes; a normalised cache would need keys and updaters for every type to win nothing.
import { filter, map, merge, pipe, share, tap } from 'wonka';
import { formatDocument, makeOperation, makeResult, type Exchange, type Operation, type OperationResult, type TypedDocumentNode } from 'urql';

/** Whether the operation's document has its definitions to add `__typename` to (urql types a
 * persisted document, which may have none, apart). */
function isFormattable(query: Operation['query']): query is TypedDocumentNode {
  return 'definitions' in query && Array.isArray(query.definitions);
}

/** Every `__typename` in a result: what a mutation naming one of them makes stale. */
export function typenamesOf(data: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(data)) {
    for (const each of data) typenamesOf(each, into);
  } else if (typeof data === 'object' && data !== null) {
    for (const [key, value] of Object.entries(data)) {
      if (key === '__typename' && typeof value === 'string') into.add(value);
      else typenamesOf(value, into);
    }
  }
  return into;
}

/** A Map in least-recently-used order: reading a key moves it to the end. */
export class ResultCache {
  private readonly results = new Map<number, OperationResult>();

  constructor(
    readonly maxResults: number,
    /** Told of each result forgotten to stay within the bound. */
    private readonly onEvict: (key: number, result: OperationResult) => void = () => undefined,
  ) {}

  get size(): number {
    return this.results.size;
  }

  has(key: number): boolean {
    return this.results.has(key);
  }

  get(key: number): OperationResult | undefined {
    const found = this.results.get(key);
    if (found) {
      this.results.delete(key);
      this.results.set(key, found);
    }
    return found;
  }

  set(key: number, result: OperationResult): void {
    this.results.delete(key);
    this.results.set(key, result);
    for (const [oldest, forgotten] of this.results) {
      if (this.results.size <= this.maxResults) break;
      this.results.delete(oldest);
      this.onEvict(oldest, forgotten);
    }
  }

  delete(key: number): OperationResult | undefined {
    const found = this.results.get(key);
    this.results.delete(key);
    return found;
  }
}

export function boundedCacheExchange(maxResults: number): Exchange {
  return ({ forward, client }) => {
    // Typename → the keys of the cached results holding it; a forgotten result leaves it too.
    const keysOf = new Map<string, Set<number>>();
    const typenamesOfResult = (result: OperationResult) => [...typenamesOf(result.data), ...(result.operation.context.additionalTypenames ?? [])];
    const cache = new ResultCache(maxResults, (key, forgotten) => {
      for (const typename of typenamesOfResult(forgotten)) {
        const keys = keysOf.get(typename);
        keys?.delete(key);
        if (keys?.size === 0) keysOf.delete(typename);
      }
    });
    const isCached = (operation: Operation) =>
      operation.kind === 'query' &&
      operation.context.requestPolicy !== 'network-only' &&
      (operation.context.requestPolicy === 'cache-only' || cache.has(operation.key));
    const rerun = (operation: Operation) => client.reexecuteOperation(makeOperation(operation.kind, operation, { requestPolicy: 'network-only' }));
    const withTypenames = (operation: Operation) => {
      if (!isFormattable(operation.query)) return operation;
      const query = formatDocument(operation.query);
      return query === operation.query ? operation : { ...makeOperation(operation.kind, operation), query };
    };

    return (operations$) => {
      const shared$ = share(operations$);
      const cached$ = pipe(
        shared$,
        filter((operation) => operation.kind === 'query' && isCached(operation)),
        map((operation) => {
          const hit = cache.get(operation.key);
          const result: OperationResult = hit ? { ...hit, operation } : makeResult(operation, { data: null });
          if (operation.context.requestPolicy === 'cache-and-network') {
            result.stale = true;
            rerun(operation);
          }
          return result;
        }),
      );
      const forwarded$ = pipe(
        merge([
          pipe(
            shared$,
            filter((operation) => (operation.kind === 'query' || operation.kind === 'mutation') && !isCached(operation)),
            map(withTypenames),
          ),
          pipe(
            shared$,
            filter((operation) => operation.kind !== 'query' && operation.kind !== 'mutation'),
          ),
        ]),
        filter((operation) => operation.kind !== 'query' || operation.context.requestPolicy !== 'cache-only'),
        forward,
        tap((result) => {
          const { operation } = result;
          const typenames = typenamesOfResult(result);
          if (operation.kind === 'mutation') {
            const stale = new Set<number>();
            for (const typename of typenames) {
              for (const key of keysOf.get(typename) ?? []) stale.add(key);
              keysOf.delete(typename);
            }
            for (const key of stale) {
              const found = cache.delete(key);
              if (found) rerun(found.operation);
            }
          } else if (operation.kind === 'query' && result.data) {
            cache.set(operation.key, result);
            for (const typename of typenames) {
              const keys = keysOf.get(typename) ?? new Set<number>();
              keys.add(operation.key);
              keysOf.set(typename, keys);
            }
          }
        }),
      );
      return merge([cached$, forwarded$]);
    };
  };
}
