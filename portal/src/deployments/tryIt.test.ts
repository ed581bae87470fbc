import { describe, expect, it } from 'vitest';
import { exampleValues, predictionRecord, signatureInputs } from './tryIt';

const SIGNATURE = {
  inputs: [
    { name: 'amount', dtype: 'float32', shape: [-1] },
    { name: 'count', dtype: 'int64', shape: [-1] },
    { name: 'online', dtype: 'bool', shape: [-1] },
    { name: 'country', dtype: 'str', shape: [-1] },
  ],
  outputs: [{ name: 'label', dtype: 'str', shape: [-1] }],
};

describe('the try-it form', () => {
  it('has one field per input, of its dtype’s kind', () => {
    expect(signatureInputs(SIGNATURE).map((input) => [input.name, input.kind])).toEqual([
      ['amount', 'number'],
      ['count', 'integer'],
      ['online', 'boolean'],
      ['country', 'text'],
    ]);
    expect(signatureInputs(null)).toEqual([]);
  });

  it('starts from a training row and sends the record predict takes', () => {
    const inputs = signatureInputs(SIGNATURE);
    const values = exampleValues(inputs, { amount: 12.5, count: 3, online: true, country: 'FR', label: 'ok' });
    expect(values).toEqual({ amount: '12.5', count: '3', online: true, country: 'FR' });
    expect(predictionRecord(inputs, { ...values, count: '' })).toEqual({ amount: 12.5, count: null, online: true, country: 'FR' });
  });
});
