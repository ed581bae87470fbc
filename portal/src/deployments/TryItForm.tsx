import { useMemo, useState, type FormEvent } from 'react';
import { useMutation } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage } from '../components/ErrorMessage';
import { graphql } from '../gql';
import { exampleValues, predictionRecord, signatureInputs } from './tryIt';

const PredictMutation = graphql(`
  mutation Predict($deployment: ID!, $inputs: [JSON!]!) {
    predict(deployment: $deployment, inputs: $inputs) {
      __typename
      ... on PredictSuccess {
        role
        outputs
        modelVersion {
          id
          number
        }
      }
      ...ErrorFields
    }
  }
`);

/** `example`: a row of the data the version was trained on, to start from. */
export function TryItForm({ deploymentId, signature, example }: { deploymentId: string; signature: unknown; example: unknown }) {
  const inputs = useMemo(() => signatureInputs(signature), [signature]);
  const [values, setValues] = useState<Record<string, string | boolean>>(() => exampleValues(inputs, example));
  const [answer, setAnswer] = useState<{ role: string; version: number; outputs: unknown } | null>(null);
  const [, predict] = useMutation(PredictMutation);
  const action = useMutationAction();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setAnswer(null);
    const variables = { deployment: deploymentId, inputs: [predictionRecord(inputs, values)] };
    const got = await action.run(() => predict(variables), (data) => data.predict);
    if (got) setAnswer({ role: got.role, version: got.modelVersion.number, outputs: got.outputs[0] });
  }

  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby="try-heading">
      <h2 id="try-heading">Try it</h2>
      {inputs.length === 0 ? (
        <p className="muted">The model's signature names no inputs.</p>
      ) : (
        <p className="muted">One record, one field per input of the model; it starts from a row of the training data.</p>
      )}
      <div className="row">
        {inputs.map((input) => (
          <label key={input.name} className={input.kind === 'boolean' ? 'checkbox' : undefined}>
            {input.kind === 'boolean' && (
              <input type="checkbox" checked={values[input.name] === true} onChange={(e) => setValues((old) => ({ ...old, [input.name]: e.target.checked }))} />
            )}
            {input.name}
            {input.kind !== 'boolean' && (
              <input
                type={input.kind === 'text' ? 'text' : 'number'}
                step={input.kind === 'integer' ? '1' : 'any'}
                value={String(values[input.name] ?? '')}
                onChange={(e) => setValues((old) => ({ ...old, [input.name]: e.target.value }))}
              />
            )}
          </label>
        ))}
      </div>
      <ErrorMessage error={action.problem} />
      {answer && (
        <div role="status" className="notice">
          <p>
            Answered by the {answer.role} version (v{answer.version}):
          </p>
          <pre tabIndex={0} className="code" aria-label="Prediction">
            {JSON.stringify(answer.outputs, null, 2)}
          </pre>
        </div>
      )}
      <button type="submit" disabled={action.busy}>
        Predict
      </button>
    </form>
  );
}
