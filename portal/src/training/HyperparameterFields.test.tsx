import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HyperparameterFields } from './HyperparameterFields';
import { hyperparameterFields, initialValues } from './hyperparameterForm';

afterEach(cleanup);

const FIELDS = hyperparameterFields([
  { name: 'learning_rate', type: 'float', default: 0.01, description: 'step size', minimum: 0, maximum: 1, choices: [] },
  { name: 'shuffle', type: 'bool', default: false, description: 'shuffle rows', choices: [] },
  { name: 'optimizer', type: 'str', default: 'adam', description: 'which', choices: ['adam', 'sgd'] },
]);

describe('HyperparameterFields', () => {
  it('labels every control and describes it, so it is found by its label', () => {
    render(<HyperparameterFields fields={FIELDS} values={initialValues(FIELDS)} errors={{}} onChange={() => {}} />);
    const rate = screen.getByLabelText('Learning rate') as HTMLInputElement;
    expect(rate.type).toBe('number');
    expect(rate.value).toBe('0.01');
    expect(rate.min).toBe('0');
    // Described by its own hint: the id is React's (useId), not built from the parameter's name.
    const hint = document.getElementById(rate.getAttribute('aria-describedby') ?? '');
    expect(hint?.textContent).toBe('step size');
    expect((screen.getByLabelText('Shuffle') as HTMLInputElement).checked).toBe(false);
    expect((screen.getByLabelText('Optimizer') as HTMLSelectElement).value).toBe('adam');
  });

  it('reports each change by name, and shows a field’s error beside it', () => {
    const onChange = vi.fn();
    render(<HyperparameterFields fields={FIELDS} values={initialValues(FIELDS)} errors={{ learning_rate: 'must be at most 1' }} onChange={onChange} />);
    fireEvent.change(screen.getByLabelText('Learning rate'), { target: { value: '0.5' } });
    fireEvent.click(screen.getByLabelText('Shuffle'));
    expect(onChange).toHaveBeenCalledWith('learning_rate', '0.5');
    expect(onChange).toHaveBeenCalledWith('shuffle', true);
    expect(screen.getByText('Learning rate must be at most 1')).toBeTruthy();
    expect(screen.getByLabelText('Learning rate').getAttribute('aria-invalid')).toBe('true');
  });
});
