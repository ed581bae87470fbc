import { useMutation } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { JsonDocumentEditor } from '../components/JsonDocumentEditor';
import { graphql } from '../gql';

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
      ...ErrorFields
    }
  }
`);

const GATES_EXAMPLE = '[{"kind": "metric_threshold", "metric": "accuracy", "min": 0.8, "aliases": ["staging", "production"]}]';

/** The model's promotion gates, the checks a version passes before an alias moves to it
 * (docs/reference.md), as the JSON list the API takes. */
export function PromotionGatesEditor({ modelId, gates, canEdit }: { modelId: string; gates: unknown; canEdit: boolean }) {
  const [, setGates] = useMutation(SetGatesMutation);
  const action = useMutationAction();
  return (
    <JsonDocumentEditor
      title="Promotion gates"
      label="Promotion gates (JSON)"
      document={gates}
      canEdit={canEdit}
      rows={6}
      placeholder={GATES_EXAMPLE}
      saveLabel="Save promotion gates"
      savedNotice="Promotion gates saved: they apply to the next alias move."
      action={action}
      save={async (document) => {
        const saved = await action.run(
          () => setGates({ model: modelId, gates: document }),
          (data) => data.setModelPromotionGates,
        );
        return saved && { stored: saved.model.promotionGates };
      }}
    />
  );
}
