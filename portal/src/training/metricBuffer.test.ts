import { describe, expect, it } from 'vitest';
import { MetricBuffer } from './metricBuffer';

describe('MetricBuffer', () => {
  it('replays histories of different steps into one aligned table', () => {
    const buffer = new MetricBuffer();
    buffer.replay({
      loss: [
        { step: 1, value: 0.9 },
        { step: 2, value: 0.7 },
        { step: 3, value: 0.6 },
      ],
      val_accuracy: [{ step: 2, value: 0.8 }],
    });
    expect(buffer.keys).toEqual(['loss', 'val_accuracy']);
    expect(buffer.toAligned()).toEqual([
      [1, 2, 3],
      [0.9, 0.7, 0.6],
      [null, 0.8, null],
    ]);
  });

  it('appends live points after the history and drops steps it already has', () => {
    const buffer = new MetricBuffer();
    buffer.replay({ loss: [{ step: 1, value: 0.9 }, { step: 2, value: 0.7 }] });
    // A resubscription replays events the history already holds.
    expect(buffer.append(1, { loss: 0.9 })).toBe(false);
    expect(buffer.append(2, { loss: 0.7 })).toBe(false);
    expect(buffer.append(3, { loss: 0.5 })).toBe(true);
    expect(buffer.append(3, { loss: 0.5 })).toBe(false);
    expect(buffer.append(4, { loss: 0.4 })).toBe(true);
    const [steps, loss] = buffer.toAligned();
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(loss).toEqual([0.9, 0.7, 0.5, 0.4]);
    expect(new Set(steps).size).toBe(steps.length);
  });

  it('charts an epoch’s value once, not at every step that repeats it', () => {
    const buffer = new MetricBuffer();
    buffer.replay({ loss: [{ step: 1, value: 1 }], val_loss: [{ step: 1, value: 0.95 }] });
    buffer.append(2, { loss: 0.9, val_loss: 0.95 });
    buffer.append(3, { loss: 0.8, val_loss: 0.95 });
    buffer.append(4, { loss: 0.7, val_loss: 0.75, val_accuracy: 0.6 });
    buffer.append(5, { loss: 0.6, val_loss: 0.75, val_accuracy: 0.6 });
    expect(buffer.toAligned()).toEqual([
      [1, 2, 3, 4, 5],
      [1, 0.9, 0.8, 0.7, 0.6],
      [0.95, null, null, 0.75, null],
      [null, null, null, 0.6, null],
    ]);
  });

  it('keeps a diverged step as a gap, not as a number', () => {
    const buffer = new MetricBuffer();
    buffer.append(1, { loss: Number.NaN });
    buffer.append(2, { loss: 0.5 });
    expect(buffer.toAligned()).toEqual([[1, 2], [null, 0.5]]);
  });

  it('stays bounded on a long live run, keeping recent steps and every epoch value', () => {
    const buffer = new MetricBuffer(100);
    for (let step = 1; step <= 1000; step += 1) {
      buffer.append(step, step % 100 === 0 ? { loss: 1 / step, val_loss: 2 / step } : { loss: 1 / step });
    }
    expect(buffer.length).toBeLessThanOrEqual(100);
    const [steps, , valLoss] = buffer.toAligned();
    expect(steps[steps.length - 1]).toBe(1000);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(valLoss?.filter((value) => value !== null)).toHaveLength(10);
  });

  it('stays bounded when another key changes at every step', () => {
    const buffer = new MetricBuffer(100);
    for (let step = 1; step <= 1000; step += 1) buffer.append(step, { loss: 1 / step, learning_rate: 0.1 / step });
    expect(buffer.length).toBeLessThanOrEqual(100);
    const [steps, loss, rate] = buffer.toAligned();
    expect(steps[steps.length - 1]).toBe(1000);
    expect(loss).toHaveLength(steps.length);
    expect(rate?.[rate.length - 1]).toBeCloseTo(0.1 / 1000);
  });

  it('holds at most 4,000 points by default: 5 minutes at 20 events a second is 6,000', () => {
    const buffer = new MetricBuffer();
    buffer.replay({ loss: Array.from({ length: 1000 }, (_, index) => ({ step: index * 1000, value: 1 })) });
    for (let step = 1_000_000; step < 1_006_000; step += 1) buffer.append(step, { loss: 1 / step });
    expect(buffer.length).toBeLessThanOrEqual(4000);
    expect(buffer.lastStep).toBe(1_005_999);
  });

  it('forgets the points after a resumed job’s checkpoint, then takes them again', () => {
    const buffer = new MetricBuffer();
    buffer.replay({ loss: [1, 2, 3, 4].map((step) => ({ step, value: 1 / step })) });
    buffer.truncateAfter(2);
    expect(buffer.lastStep).toBe(2);
    expect(buffer.append(3, { loss: 0.3 })).toBe(true);
    expect(buffer.toAligned()).toEqual([
      [1, 2, 3],
      [1, 0.5, 0.3],
    ]);
  });

  it('starts over on clear', () => {
    const buffer = new MetricBuffer();
    buffer.append(5, { loss: 1 });
    buffer.clear();
    expect(buffer.length).toBe(0);
    expect(buffer.append(1, { loss: 2 })).toBe(true);
  });
});
