import { describe, expect, it } from 'vitest';
import { hyperparameterFields, initialValues, parseHyperparameters, type HyperParameterSpec } from './hyperparameterForm';

const SPECS: HyperParameterSpec[] = [
  { name: 'learning_rate', type: 'float', default: 0.001, description: 'step size', minimum: 0, maximum: 1, choices: [] },
  { name: 'epochs', type: 'int', default: 10, description: 'passes', minimum: 1, maximum: null, choices: [] },
  { name: 'shuffle', type: 'bool', default: true, description: 'shuffle rows', choices: [] },
  { name: 'optimizer', type: 'str', default: 'adam', description: 'which', choices: ['adam', 'sgd'] },
  { name: 'note', type: 'str', default: null, description: 'free text', choices: [] },
];

describe('hyperparameterFields', () => {
  it('gives each type its control, with its bounds and default', () => {
    const fields = hyperparameterFields(SPECS);
    expect(fields.map((field) => [field.name, field.label, field.control])).toEqual([
      ['learning_rate', 'Learning rate', { kind: 'number', step: 'any', min: 0, max: 1 }],
      ['epochs', 'Epochs', { kind: 'number', step: '1', min: 1 }],
      ['shuffle', 'Shuffle', { kind: 'checkbox' }],
      ['optimizer', 'Optimizer', { kind: 'select', options: ['adam', 'sgd'] }],
      ['note', 'Note', { kind: 'text' }],
    ]);
    expect(initialValues(fields)).toEqual({ learning_rate: '0.001', epochs: '10', shuffle: true, optimizer: 'adam', note: '' });
  });
});

describe('parseHyperparameters', () => {
  it('turns the defaults back into the JSON they came from, leaving empty fields out', () => {
    const parsed = parseHyperparameters(SPECS, initialValues(hyperparameterFields(SPECS)));
    expect(parsed).toEqual({ values: { learning_rate: 0.001, epochs: 10, shuffle: true, optimizer: 'adam' }, errors: {} });
  });

  it('refuses what the API would refuse, field by field', () => {
    const parsed = parseHyperparameters(SPECS, { learning_rate: '2', epochs: '2.5', shuffle: false, optimizer: 'rmsprop', note: 'x' });
    expect(parsed.errors).toEqual({
      learning_rate: 'must be at most 1',
      epochs: 'must be a whole number',
      optimizer: 'must be one of adam, sgd',
    });
    expect(parsed.values).toEqual({ shuffle: false, note: 'x' });
  });

  it('refuses text in a number field and a value under the minimum', () => {
    expect(parseHyperparameters(SPECS, { learning_rate: 'fast', epochs: '0' }).errors).toEqual({
      learning_rate: 'must be a number',
      epochs: 'must be at least 1',
    });
  });
});
