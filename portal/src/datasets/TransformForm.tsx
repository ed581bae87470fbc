import { useState, type FormEvent } from 'react';
import { useMutation } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage } from '../components/ErrorMessage';
import { graphql } from '../gql';
import type { ImputeStrategy, TransformKind, TransformStepInput } from '../gql/graphql';

const TransformMutation = graphql(`
  mutation TransformDatasetVersion($input: TransformDatasetVersionInput!) {
    transformDatasetVersion(input: $input) {
      __typename
      ... on DatasetVersionSuccess {
        created
        version {
          id
          number
        }
      }
      ...ErrorFields
    }
  }
`);

const KINDS: Array<[TransformKind, string]> = [
  ['DROP_DUPLICATES', 'Drop duplicate rows'],
  ['DROP_NULLS', 'Drop rows with nulls'],
  ['IMPUTE_NULLS', 'Fill nulls'],
  ['FILTER_ROWS', 'Keep rows matching'],
  ['CAST', 'Change a column’s type'],
];

/** One cleaning step: each kind asks only for the fields it takes (docs/reference.md). */
export function TransformForm({
  versionId,
  versionNumber,
  columns,
  onDone,
}: {
  versionId: string;
  versionNumber: number;
  columns: ReadonlyArray<{ name: string }>;
  onDone: (number: number) => void;
}) {
  const [kind, setKind] = useState<TransformKind>('DROP_DUPLICATES');
  const [column, setColumn] = useState(columns[0]?.name ?? '');
  const [strategy, setStrategy] = useState<ImputeStrategy>('MEAN');
  const [value, setValue] = useState('');
  const [expression, setExpression] = useState('');
  const [dtype, setDtype] = useState('float');
  const [made, setMade] = useState<string | null>(null);
  const [, transform] = useMutation(TransformMutation);
  const action = useMutationAction();

  function step(): TransformStepInput {
    switch (kind) {
      case 'DROP_DUPLICATES':
      case 'DROP_NULLS':
        return { kind };
      case 'IMPUTE_NULLS': {
        if (strategy !== 'CONSTANT') return { kind, column, strategy };
        let fill: unknown = value;
        try {
          fill = JSON.parse(value);
        } catch {
          // Plain text is a text fill.
        }
        return { kind, column, strategy, value: fill };
      }
      case 'FILTER_ROWS':
        return { kind, expression };
      case 'CAST':
        return { kind, column, dtype };
    }
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    setMade(null);
    const input = { version: versionId, steps: [step()] };
    const done = await action.run(() => transform({ input }), (data) => data.transformDatasetVersion);
    if (!done) return;
    setMade(done.created ? `Made version ${done.version.number}.` : `Version ${done.version.number} already holds that result.`);
    onDone(done.version.number);
  }

  const needsColumn = kind === 'IMPUTE_NULLS' || kind === 'CAST';
  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby="transform-heading">
      <h2 id="transform-heading">Clean version {versionNumber}</h2>
      <div className="row">
        <label>
          Cleaning step
          <select value={kind} onChange={(e) => setKind(e.target.value as TransformKind)}>
            {KINDS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        {needsColumn && (
          <label>
            Column
            <select value={column} onChange={(e) => setColumn(e.target.value)}>
              {columns.map((each) => (
                <option key={each.name} value={each.name}>
                  {each.name}
                </option>
              ))}
            </select>
          </label>
        )}
        {kind === 'IMPUTE_NULLS' && (
          <label>
            Fill with
            <select value={strategy} onChange={(e) => setStrategy(e.target.value as ImputeStrategy)}>
              <option value="MEAN">the mean</option>
              <option value="MEDIAN">the median</option>
              <option value="CONSTANT">a constant</option>
            </select>
          </label>
        )}
        {kind === 'IMPUTE_NULLS' && strategy === 'CONSTANT' && (
          <label>
            Constant
            <input required value={value} onChange={(e) => setValue(e.target.value)} />
          </label>
        )}
        {kind === 'FILTER_ROWS' && (
          <label>
            Rows to keep
            <input required placeholder="age >= 18" value={expression} onChange={(e) => setExpression(e.target.value)} />
          </label>
        )}
        {kind === 'CAST' && (
          <label>
            New type
            <select value={dtype} onChange={(e) => setDtype(e.target.value)}>
              {['integer', 'float', 'boolean', 'string', 'timestamp', 'date'].map((each) => (
                <option key={each}>{each}</option>
              ))}
            </select>
          </label>
        )}
      </div>
      <ErrorMessage error={action.problem} />
      {made && (
        <p role="status" className="notice">
          {made}
        </p>
      )}
      <button type="submit" disabled={action.busy}>
        Apply cleaning step
      </button>
    </form>
  );
}
