import { useMutation } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { JsonDocumentEditor } from '../components/JsonDocumentEditor';
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
      ...ErrorFields
    }
  }
`);

const EXAMPLE = '[\n  {"kind": "not_null", "column": "amount"},\n  {"kind": "range", "column": "amount", "min": 0}\n]';

/** The dataset's expectations as the JSON list the API takes (docs/reference.md lists the
 * kinds); the API names each problem by its path, e.g. `expectations.1.min`. */
export function ExpectationsEditor({ datasetId, expectations, canEdit }: { datasetId: string; expectations: unknown; canEdit: boolean }) {
  const [, setExpectations] = useMutation(SetExpectationsMutation);
  const action = useMutationAction();
  return (
    <JsonDocumentEditor
      title="Expectations"
      label="Expectations (JSON)"
      document={expectations}
      canEdit={canEdit}
      rows={8}
      placeholder={EXAMPLE}
      help={
        <p className="muted">
          A list of checks, each <code>{'{"kind": ..., its arguments, "blocking": true}'}</code>: allowed_values, column_type,
          no_duplicate_rows, not_null, range, regex, row_count, rule, unique (docs/reference.md).
        </p>
      }
      saveLabel="Save expectations"
      savedNotice="Expectations saved. Validate a version to check it against them."
      action={action}
      save={async (document) => {
        const saved = await action.run(
          () => setExpectations({ dataset: datasetId, expectations: document }),
          (data) => data.setDatasetExpectations,
        );
        return saved && { stored: saved.dataset.expectations };
      }}
    />
  );
}
