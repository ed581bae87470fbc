import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useNavigate, useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { resultError } from '../api/errors';
import { ErrorMessage, Loading } from '../components/ErrorMessage';
import { ProjectNav } from '../components/ProjectNav';
import { graphql } from '../gql';
import { HyperparameterFields } from '../training/HyperparameterFields';
import { hyperparameterFields, initialValues, parseHyperparameters, type FormValues } from '../training/hyperparameterForm';

const SubmitFormQuery = graphql(`
  query SubmitJobForm($slug: String!) {
    trainers {
      name
      description
      task
      hyperparameters {
        name
        type
        default
        description
        minimum
        maximum
        choices
      }
    }
    project(slug: $slug) {
      id
      datasets(first: 100) {
        nodes {
          id
          name
          versions(first: 100) {
            nodes {
              id
              number
              columns {
                name
                type
              }
            }
          }
        }
      }
    }
  }
`);

const SubmitTrainingJobMutation = graphql(`
  mutation SubmitTrainingJob($input: SubmitTrainingJobInput!) {
    submitTrainingJob(input: $input) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
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

export function SubmitJobPage() {
  const slug = useParams().slug ?? '';
  const navigate = useNavigate();
  const [{ data, error, fetching }] = useQuery({ query: SubmitFormQuery, variables: { slug } });
  const [submission, submit] = useMutation(SubmitTrainingJobMutation);
  const [versionId, setVersionId] = useState('');
  const [trainerName, setTrainerName] = useState('');
  const [target, setTarget] = useState('');
  const [validationFraction, setValidationFraction] = useState('0.2');
  const [seed, setSeed] = useState('0');
  const [modelName, setModelName] = useState('');
  const [values, setValues] = useState<FormValues>({});
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<unknown>(null);

  const versions = useMemo(
    () =>
      (data?.project?.datasets.nodes ?? []).flatMap((dataset) =>
        [...dataset.versions.nodes].reverse().map((version) => ({ ...version, label: `${dataset.name} v${version.number}` })),
      ),
    [data],
  );
  const trainers = data?.trainers ?? [];
  const trainer = trainers.find((each) => each.name === trainerName);
  const version = versions.find((each) => each.id === versionId);
  const fields = useMemo(() => hyperparameterFields(trainer?.hyperparameters ?? []), [trainer]);

  // Defaults once loaded: the newest version, the first trainer, the version's last column.
  useEffect(() => {
    if (!versionId && versions[0]) setVersionId(versions[0].id);
  }, [versions, versionId]);
  useEffect(() => {
    if (!trainerName && trainers[0]) setTrainerName(trainers[0].name);
  }, [trainers, trainerName]);
  useEffect(() => setValues(initialValues(fields)), [fields]);
  useEffect(() => {
    const columns = version?.columns ?? [];
    if (!columns.some((column) => column.name === target)) setTarget(columns[columns.length - 1]?.name ?? '');
  }, [version, target]);

  async function send(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const parsed = parseHyperparameters(trainer?.hyperparameters ?? [], values);
    setFieldErrors(parsed.errors);
    if (Object.keys(parsed.errors).length > 0) return;
    const result = await submit({
      input: {
        datasetVersion: versionId,
        trainer: trainerName,
        target,
        hyperparameters: parsed.values,
        validationFraction: Number(validationFraction),
        seed: Number(seed),
        modelName: modelName.trim() || null,
      },
    });
    const answer = result.data?.submitTrainingJob;
    if (result.error || !answer) return setProblem(result.error);
    if (answer.__typename === 'TrainingJobSuccess') navigate(`/projects/${slug}/jobs/${encodeURIComponent(answer.job.id)}`);
    else setProblem(resultError(answer));
  }

  if (fetching && !data) return <Loading what="the trainers" />;
  if (!data && error) return <ErrorMessage error={error} />;
  return (
    <section>
      <ProjectNav slug={slug} />
      <h1>Train a model</h1>
      {versions.length === 0 ? (
        <p>Upload a dataset first: training needs a dataset version.</p>
      ) : (
        <form onSubmit={send} className="panel stack">
          <div className="row">
            <label>
              Dataset version
              <select required value={versionId} onChange={(e) => setVersionId(e.target.value)}>
                {versions.map((each) => (
                  <option key={each.id} value={each.id}>
                    {each.label}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Trainer
              <select required value={trainerName} onChange={(e) => setTrainerName(e.target.value)}>
                {trainers.map((each) => (
                  <option key={each.name} value={each.name}>
                    {each.name} ({each.task})
                  </option>
                ))}
              </select>
            </label>
            <label>
              Target column
              <select required value={target} onChange={(e) => setTarget(e.target.value)}>
                {(version?.columns ?? []).map((column) => (
                  <option key={column.name} value={column.name}>
                    {column.name} ({column.type})
                  </option>
                ))}
              </select>
            </label>
          </div>
          {trainer && <p className="muted">{trainer.description}</p>}
          <div className="row">
            <label>
              Validation fraction
              <input type="number" min="0" max="0.99" step="any" value={validationFraction} onChange={(e) => setValidationFraction(e.target.value)} />
            </label>
            <label>
              Seed
              <input type="number" step="1" value={seed} onChange={(e) => setSeed(e.target.value)} />
            </label>
            <label>
              Model name (optional)
              <input value={modelName} placeholder="the dataset's name" onChange={(e) => setModelName(e.target.value)} />
            </label>
          </div>
          <HyperparameterFields fields={fields} values={values} errors={fieldErrors} onChange={(name, value) => setValues((old) => ({ ...old, [name]: value }))} />
          <ErrorMessage error={problem} />
          <button type="submit" disabled={submission.fetching || !trainer || !target}>
            Submit training job
          </button>
        </form>
      )}
    </section>
  );
}
