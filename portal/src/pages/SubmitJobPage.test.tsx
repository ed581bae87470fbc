import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { Provider, type Client, type OperationResult } from 'urql';
import { afterEach, describe, expect, it } from 'vitest';
import { makeSubject } from 'wonka';
import { paths } from '../paths';
import { SubmitJobPage } from './SubmitJobPage';

afterEach(cleanup);

/** The form's query as the API answers it; a new object each time, as a refresh gives. */
function formData(learningRateDefault: number) {
  return {
    trainers: [
      {
        name: 'mlp',
        description: 'a small network',
        task: 'classification',
        hyperparameters: [
          { name: 'learning_rate', type: 'float', default: learningRateDefault, description: 'step size', minimum: 0, maximum: 1, choices: [] },
          { name: 'epochs', type: 'int', default: 10, description: 'passes', minimum: 1, maximum: null, choices: [] },
        ],
      },
    ],
    project: {
      id: 'P1',
      datasets: { nodes: [{ id: 'D1', name: 'payments', versions: { nodes: [{ id: 'V1', number: 1, columns: [{ name: 'fraud', type: 'boolean' }] }] } }] },
    },
  };
}

describe('SubmitJobPage', () => {
  it('keeps the hyperparameters typed when the trainers are read again', async () => {
    // A client whose query answers come when the test says: the first read, then a refresh.
    const answers = makeSubject<OperationResult>();
    let operation: unknown = null;
    const client = {
      executeQuery: (request: unknown) => {
        operation = request;
        return answers.source;
      },
      executeMutation: () => answers.source,
      suspense: false,
    } as unknown as Client;
    const answer = (data: unknown) => act(() => answers.next({ operation, data, stale: false, hasNext: false } as unknown as OperationResult));

    render(
      <Provider value={client}>
        <MemoryRouter initialEntries={[paths.submitJob('fraud')]}>
          <Routes>
            <Route path="projects/:slug/jobs/new" element={<SubmitJobPage />} />
          </Routes>
        </MemoryRouter>
      </Provider>,
    );
    answer(formData(0.01));
    const rate = (await screen.findByLabelText('Learning rate')) as HTMLInputElement;
    expect(rate.value).toBe('0.01');
    fireEvent.change(rate, { target: { value: '0.3' } });

    // Read again, its default changed meanwhile: the user's value stays, the untouched field
    // follows.
    answer(formData(0.05));
    expect((screen.getByLabelText('Learning rate') as HTMLInputElement).value).toBe('0.3');
    expect((screen.getByLabelText('Epochs') as HTMLInputElement).value).toBe('10');
    expect(document.title).toBe('Train a model · fraud · aiaas');
  });
});
