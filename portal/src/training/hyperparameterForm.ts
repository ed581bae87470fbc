// The submit form's hyperparameter fields, generated from the trainer's typed description
// (`Trainer.hyperparameters`): one field per parameter, of the control its type needs, checked
// here as the API will check it so that most mistakes are shown before the request.

export interface HyperParameterSpec {
  name: string;
  /** int, float, bool or str. */
  type: string;
  default: unknown;
  description: string;
  minimum?: number | null;
  maximum?: number | null;
  choices: ReadonlyArray<string>;
}

export type FieldControl =
  | { kind: 'checkbox' }
  | { kind: 'select'; options: string[] }
  | { kind: 'number'; step: string; min?: number; max?: number }
  | { kind: 'text' };

export interface HyperParameterField {
  name: string;
  label: string;
  description: string;
  control: FieldControl;
  /** The control's starting value: the parameter's default, as the control holds it. */
  initial: string | boolean;
}

/** A form's values, as its controls hold them: text for everything but checkboxes. */
export type FormValues = Record<string, string | boolean>;

function label(name: string): string {
  const words = name.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function hyperparameterFields(specs: ReadonlyArray<HyperParameterSpec>): HyperParameterField[] {
  return specs.map((spec) => {
    let control: FieldControl;
    if (spec.type === 'bool') control = { kind: 'checkbox' };
    else if (spec.choices.length > 0) control = { kind: 'select', options: [...spec.choices] };
    else if (spec.type === 'int' || spec.type === 'float') {
      control = { kind: 'number', step: spec.type === 'int' ? '1' : 'any' };
      if (typeof spec.minimum === 'number') control.min = spec.minimum;
      if (typeof spec.maximum === 'number') control.max = spec.maximum;
    } else control = { kind: 'text' };
    const initial =
      control.kind === 'checkbox' ? spec.default === true : spec.default === null || spec.default === undefined ? '' : String(spec.default);
    return { name: spec.name, label: label(spec.name), description: spec.description, control, initial };
  });
}

export function initialValues(fields: ReadonlyArray<HyperParameterField>): FormValues {
  return Object.fromEntries(fields.map((field) => [field.name, field.initial]));
}

export interface ParsedHyperparameters {
  values: Record<string, unknown>;
  errors: Record<string, string>;
}

/** The JSON the API takes, and what is wrong with each field. Empty fields are left out, so
 * that they take their defaults. */
export function parseHyperparameters(specs: ReadonlyArray<HyperParameterSpec>, form: FormValues): ParsedHyperparameters {
  const values: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const spec of specs) {
    const raw = form[spec.name];
    if (raw === undefined) continue;
    if (spec.type === 'bool') {
      values[spec.name] = raw === true || raw === 'true';
      continue;
    }
    const text = String(raw).trim();
    if (text === '') continue;
    if (spec.choices.length > 0 && !spec.choices.includes(text)) {
      errors[spec.name] = `must be one of ${spec.choices.join(', ')}`;
      continue;
    }
    if (spec.type === 'int' || spec.type === 'float') {
      const number = Number(text);
      if (!Number.isFinite(number)) {
        errors[spec.name] = 'must be a number';
        continue;
      }
      if (spec.type === 'int' && !Number.isInteger(number)) {
        errors[spec.name] = 'must be a whole number';
        continue;
      }
      if (typeof spec.minimum === 'number' && number < spec.minimum) {
        errors[spec.name] = `must be at least ${spec.minimum}`;
        continue;
      }
      if (typeof spec.maximum === 'number' && number > spec.maximum) {
        errors[spec.name] = `must be at most ${spec.maximum}`;
        continue;
      }
      values[spec.name] = number;
    } else values[spec.name] = text;
  }
  return { values, errors };
}
