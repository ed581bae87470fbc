import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useNavigate, useParams } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';
import { useMutationAction } from '../api/useMutationAction';
import { ErrorMessage } from '../components/ErrorMessage';
import { PageGate } from '../components/PageGate';
import { usePageTitle } from '../components/usePageTitle';
import { ProjectNav } from '../components/ProjectNav';
import { graphql } from '../gql';
import { paths } from '../paths';
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
      ...ErrorFields
    }
  }
`);

export function SubmitJobPage() {
  const slug = useParams().slug ?? '';
  const navigate = useNavigate();
  const [{ data, error, fetching }] = useQuery({ query: SubmitFormQuery, variables: { slug } });
  usePageTitle('Train a model', slug);
  const [, submit] = useMutation(SubmitTrainingJobMutation);
  const action = useMutationAction();
  const [versionId, setVersionId] = useState('');
  const [trainerName, setTrainerName] = useState('');
  const [target, setTarget] = useState('');
  const [validationFraction, setValidationFraction] = useState('0.2');
  const [seed, setSeed] = useState('0');
  const [modelName, setModelName] = useState('');
  // Only what the user typed, per trainer: the trainers query read again (a refresh, another
  // tab's change) gives new objects, and must not put the defaults back over the user's values.
  const [edits, setEdits] = useState<Record<string, FormValues>>({});
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});

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
  const values = useMemo(() => ({ ...initialValues(fields), ...edits[trainerName] }), [fields, edits, trainerName]);
  useEffect(() => {
    const columns = version?.columns ?? [];
    if (!columns.some((column) => column.name === target)) setTarget(columns[columns.length - 1]?.name ?? '');
  }, [version, target]);

  async function send(event: FormEvent) {
    event.preventDefault();
    action.setProblem(null);
    const parsed = parseHyperparameters(trainer?.hyperparameters ?? [], values);
    setFieldErrors(parsed.errors);
    if (Object.keys(parsed.errors).length > 0) return;
    const input = {
      datasetVersion: versionId,
      trainer: trainerName,
      target,
      hyperparameters: parsed.values,
      validationFraction: Number(validationFraction),
      seed: Number(seed),
      modelName: modelName.trim() || null,
    };
    const submitted = await action.run(() => submit({ input }), (data) => data.submitTrainingJob);
    if (submitted) navigate(paths.job(slug, submitted.job.id));
  }

  if (!data) {
    return (
      <PageGate query={{ data, error, fetching }} what="the trainers" notFound="Project not found">
        There is no project “{slug}” that you may see.
      </PageGate>
    );
  }
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
          <HyperparameterFields
            fields={fields}
            values={values}
            errors={fieldErrors}
            onChange={(name, value) => setEdits((old) => ({ ...old, [trainerName]: { ...old[trainerName], [name]: value } }))}
          />
          <ErrorMessage error={action.problem} />
          <button type="submit" disabled={action.busy || !trainer || !target}>
            Submit training job
          </button>
        </form>
      )}
    </section>
  );
}
