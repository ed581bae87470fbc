// The try-it form of a deployment, generated from its stable version's signature: one field
// per input tensor (a tabular model's input is one column each), of the control its dtype
// needs, and the JSON record `predict` takes.

export interface SignatureInput {
  name: string;
  dtype: string;
  kind: 'number' | 'integer' | 'boolean' | 'text';
}

export function signatureInputs(signature: unknown): SignatureInput[] {
  const inputs = (signature as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs)) return [];
  return inputs.flatMap((spec) => {
    const { name, dtype } = (spec ?? {}) as { name?: unknown; dtype?: unknown };
    if (typeof name !== 'string') return [];
    const type = typeof dtype === 'string' ? dtype : 'str';
    const kind: SignatureInput['kind'] = type.startsWith('float')
      ? 'number'
      : type.startsWith('int') || type.startsWith('uint')
        ? 'integer'
        : type === 'bool'
          ? 'boolean'
          : 'text';
    return [{ name, dtype: type, kind }];
  });
}

/** One input record; an empty field is sent as null (a missing value), text as text. */
export function predictionRecord(inputs: ReadonlyArray<SignatureInput>, form: Record<string, string | boolean>): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  for (const input of inputs) {
    const raw = form[input.name];
    if (input.kind === 'boolean') record[input.name] = raw === true;
    else if (raw === undefined || raw === '') record[input.name] = null;
    else if (input.kind === 'text') record[input.name] = String(raw);
    else record[input.name] = Number(raw);
  }
  return record;
}

/** The form's starting values: a record's values for the inputs it has (a training row). */
export function exampleValues(inputs: ReadonlyArray<SignatureInput>, example: unknown): Record<string, string | boolean> {
  const row = (typeof example === 'object' && example !== null ? example : {}) as Record<string, unknown>;
  const values: Record<string, string | boolean> = {};
  for (const input of inputs) {
    const value = row[input.name];
    if (input.kind === 'boolean') values[input.name] = value === true;
    else if (typeof value === 'number' || typeof value === 'string') values[input.name] = String(value);
  }
  return values;
}
