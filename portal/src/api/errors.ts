// Every API error is shown in plain words: its message, then its code, then what is wrong
// with each field. Never a blank screen, never "[object Object]".

export interface ApiErrorLike {
  code: string;
  message: string;
  fieldErrors?: ReadonlyArray<{ field: string; message: string }>;
  retryAfterSeconds?: number | null;
}

/** A GraphQL result union's error member, or a REST error body's `error`. */
export function isApiError(value: unknown): value is ApiErrorLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

export function describeApiError(error: ApiErrorLike): string {
  let text = `${error.message} (${error.code})`;
  // Some messages already spell out every field's problem; they are not repeated then.
  const fields = (error.fieldErrors ?? []).filter((field) => !error.message.includes(field.message));
  if (fields.length > 0) {
    text += `: ${fields.map((field) => `${field.field}: ${field.message}`).join('; ')}`;
  }
  if (typeof error.retryAfterSeconds === 'number') {
    text += `. Try again in ${error.retryAfterSeconds} s.`;
  }
  return text;
}

interface CombinedErrorLike {
  networkError?: Error;
  graphQLErrors: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }>;
  response?: { status?: number };
}

function isCombinedError(value: unknown): value is CombinedErrorLike {
  return typeof value === 'object' && value !== null && Array.isArray((value as { graphQLErrors?: unknown }).graphQLErrors);
}

/** Plain words for anything a request can fail with. */
export function describeError(error: unknown): string {
  if (error === null || error === undefined) return 'Something went wrong, without a reason given.';
  if (isApiError(error)) return describeApiError(error);
  if (typeof error === 'object' && isApiError((error as { error?: unknown }).error)) {
    return describeApiError((error as { error: ApiErrorLike }).error);
  }
  if (isCombinedError(error)) {
    if (error.response?.status === 401) return 'Your session has ended. Sign in again (UNAUTHENTICATED).';
    if (error.networkError) {
      return `Cannot reach the server: ${error.networkError.message || 'no answer'} (NETWORK_ERROR)`;
    }
    return error.graphQLErrors
      .map((each) => {
        const code = each.extensions?.code;
        return typeof code === 'string' ? `${each.message} (${code})` : each.message;
      })
      .join('; ');
  }
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  return 'Something went wrong, without a reason given.';
}
