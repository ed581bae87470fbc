import { afterEach, describe, expect, it, vi } from 'vitest';
import { coalesce } from './coalesce';

afterEach(() => {
  vi.useRealTimers();
});

describe('coalesce', () => {
  it('runs once for a burst of requests, once they pause', () => {
    vi.useFakeTimers();
    const run = vi.fn();
    const refresh = coalesce(run, 300);
    for (let n = 0; n < 50; n += 1) {
      refresh.request();
      vi.advanceTimersByTime(20);
    }
    expect(run).not.toHaveBeenCalled();
    vi.advanceTimersByTime(300);
    expect(run).toHaveBeenCalledTimes(1);
    refresh.request();
    vi.advanceTimersByTime(300);
    expect(run).toHaveBeenCalledTimes(2);
  });

  it('is not starved by a steady stream of requests', () => {
    vi.useFakeTimers();
    const run = vi.fn();
    const refresh = coalesce(run, 300, 1_000);
    for (let n = 0; n < 100; n += 1) {
      refresh.request();
      vi.advanceTimersByTime(100);
    }
    // 10 s of requests every 100 ms: one run a second.
    expect(run).toHaveBeenCalledTimes(10);
  });

  it('forgets a pending run once cancelled', () => {
    vi.useFakeTimers();
    const run = vi.fn();
    const refresh = coalesce(run, 300);
    refresh.request();
    refresh.cancel();
    vi.advanceTimersByTime(10_000);
    expect(run).not.toHaveBeenCalled();
  });
});
