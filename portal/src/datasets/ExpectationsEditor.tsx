import { useEffect, useState, type FormEvent } from 'react';
import { useMutation } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage } from '../components/ErrorMessage';
import { graphql } from '../gql';

const SetExpectationsMutation = graphql(`
  mutation SetDatasetExpectations($dataset: ID!, $expectations: JSON!) {
    setDatasetExpectations(dataset: $dataset, expectations: $expectations) {
      __typename
      ... on SetDatasetExpectationsSuccess {
        dataset {
          id
          expectations
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

const EXAMPLE = '[\n  {"kind": "not_null", "column": "amount"},\n  {"kind": "range", "column": "amount", "min": 0}\n]';

/** The dataset's expectations as the JSON list the API takes (docs/reference.md lists the
 * kinds); the API names each problem by its path, e.g. `expectations.1.min`. */
export function ExpectationsEditor({ datasetId, expectations, canEdit }: { datasetId: string; expectations: unknown; canEdit: boolean }) {
  const saved = JSON.stringify(expectations ?? [], null, 2);
  const [text, setText] = useState(saved);
  const [problem, setProblem] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const [state, save] = useMutation(SetExpectationsMutation);
  useEffect(() => setText(saved), [saved]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setDone(false);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      setProblem({ code: 'INVALID_JSON', message: `the expectations are not JSON: ${error instanceof Error ? error.message : String(error)}` });
      return;
    }
    const result = await save({ dataset: datasetId, expectations: parsed });
    const answer = result.data?.setDatasetExpectations;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'SetDatasetExpectationsSuccess') setDone(true);
    else setProblem(resultError(answer));
  }

  if (!canEdit) {
    return (
      <section aria-labelledby="expectations-heading">
        <h2 id="expectations-heading">Expectations</h2>
        <pre tabIndex={0} className="code">{saved}</pre>
      </section>
    );
  }
  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby="expectations-heading">
      <h2 id="expectations-heading">Expectations</h2>
      <label>
        Expectations (JSON)
        <textarea className="code" rows={8} spellCheck={false} placeholder={EXAMPLE} value={text} onChange={(e) => setText(e.target.value)} />
      </label>
      <p className="muted">
        A list of checks, each <code>{'{"kind": ..., its arguments, "blocking": true}'}</code>: allowed_values, column_type,
        no_duplicate_rows, not_null, range, regex, row_count, rule, unique (docs/reference.md).
      </p>
      <ErrorMessage error={problem} />
      {done && (
        <p role="status" className="notice">
          Expectations saved. Validate a version to check it against them.
        </p>
      )}
      <button type="submit" disabled={state.fetching}>
        Save expectations
      </button>
    </form>
  );
}
