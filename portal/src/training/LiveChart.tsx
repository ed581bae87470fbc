import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { MetricBuffer } from './metricBuffer';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563', '#ca8a04'];
const HEIGHT = 320;

/** Losses and errors on the left axis; accuracies and other shares on the right. */
function scaleOf(key: string): 'loss' | 'score' {
  return /loss|rmse|mse|mae|error/.test(key) ? 'loss' : 'score';
}

/**
 * The job's metrics by step. uPlot draws to a canvas and takes a whole new data set per frame
 * cheaply, so new points are batched to one redraw per animation frame.
 */
export function LiveChart({
  buffer,
  revision,
  singleScale,
  caption,
}: {
  /** Said under the chart instead of the live chart's count of points. */
  caption?: string;
  buffer: MetricBuffer;
  revision: number;
  /** One y axis of this name for every series (curves of one metric), instead of loss/score. */
  singleScale?: string;
}) {
  const holder = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const keysShown = useRef('');
  const frame = useRef<number | null>(null);

  // (Re)made when the set of metrics changes; otherwise fed new data.
  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const keys = buffer.keys;
    const signature = keys.join('\n');
    if (chart.current && signature === keysShown.current) {
      if (frame.current === null) {
        frame.current = requestAnimationFrame(() => {
          frame.current = null;
          chart.current?.setData(buffer.toAligned());
        });
      }
      return;
    }
    chart.current?.destroy();
    keysShown.current = signature;
    const scale = (key: string): string => (singleScale ? 'loss' : scaleOf(key));
    const usesScore = keys.some((key) => scale(key) === 'score');
    const options: uPlot.Options = {
      width: Math.max(280, element.clientWidth),
      height: HEIGHT,
      scales: { x: { time: false } },
      axes: [
        { label: 'step' },
        { scale: 'loss', label: singleScale ?? 'loss' },
        ...(usesScore ? [{ scale: 'score', side: 1 as const, label: 'score', grid: { show: false } }] : []),
      ],
      series: [
        { label: 'step' },
        ...keys.map((key, index) => ({
          label: key,
          scale: scale(key),
          stroke: COLORS[index % COLORS.length] ?? '#000',
          width: key === 'loss' ? 1 : 2,
          spanGaps: true,
          points: { show: key !== 'loss' && !singleScale },
        })),
      ],
    };
    chart.current = new uPlot(options, buffer.toAligned(), element);
  }, [buffer, revision, singleScale]);

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const observer = new ResizeObserver(() => {
      chart.current?.setSize({ width: Math.max(280, element.clientWidth), height: HEIGHT });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      if (frame.current !== null) cancelAnimationFrame(frame.current);
      chart.current?.destroy();
      chart.current = null;
      keysShown.current = '';
    };
  }, []);

  return (
    <figure className="chart">
      <div ref={holder} role="img" aria-label={`Chart of ${buffer.keys.join(', ') || 'no metrics yet'} by training step`} />
      <figcaption className="muted">
        {caption ?? (buffer.length === 0 ? 'No metric recorded yet.' : `${buffer.length} points; live points are added as the job reports them.`)}
      </figcaption>
    </figure>
  );
}
