import { useId } from 'react';
import type { FormValues, HyperParameterField } from './hyperparameterForm';

export function HyperparameterFields({
  fields,
  values,
  errors,
  onChange,
}: {
  fields: ReadonlyArray<HyperParameterField>;
  values: FormValues;
  errors: Record<string, string>;
  onChange: (name: string, value: string | boolean) => void;
}) {
  // Ids unique on the page whatever the parameters are named.
  const idPrefix = useId();
  return (
    <fieldset className="stack">
      <legend>Hyperparameters</legend>
      {fields.length === 0 && <p className="muted">This trainer takes no hyperparameters.</p>}
      {fields.map((field, index) => {
        const hintId = `${idPrefix}${index}-hint`;
        const errorId = `${idPrefix}${index}-error`;
        const error = errors[field.name];
        const described = error ? `${hintId} ${errorId}` : hintId;
        const value = values[field.name];
        const control = field.control;
        return (
          <div key={field.name} className="field">
            <label className={control.kind === 'checkbox' ? 'checkbox' : undefined}>
              {control.kind === 'checkbox' ? (
                <input
                  type="checkbox"
                  name={field.name}
                  aria-describedby={described}
                  checked={value === true}
                  onChange={(e) => onChange(field.name, e.target.checked)}
                />
              ) : null}
              {field.label}
              {control.kind === 'select' && (
                <select name={field.name} aria-describedby={described} value={String(value ?? '')} onChange={(e) => onChange(field.name, e.target.value)}>
                  {control.options.map((option) => (
                    <option key={option} value={option}>
                      {option}
                    </option>
                  ))}
                </select>
              )}
              {control.kind === 'number' && (
                <input
                  type="number"
                  name={field.name}
                  step={control.step}
                  min={control.min}
                  max={control.max}
                  aria-describedby={described}
                  aria-invalid={error ? true : undefined}
                  value={String(value ?? '')}
                  onChange={(e) => onChange(field.name, e.target.value)}
                />
              )}
              {control.kind === 'text' && (
                <input
                  name={field.name}
                  aria-describedby={described}
                  aria-invalid={error ? true : undefined}
                  value={String(value ?? '')}
                  onChange={(e) => onChange(field.name, e.target.value)}
                />
              )}
            </label>
            <small id={hintId} className="muted">
              {field.description}
            </small>
            {error && (
              <small id={errorId} className="error">
                {field.label} {error}
              </small>
            )}
          </div>
        );
      })}
    </fieldset>
  );
}
