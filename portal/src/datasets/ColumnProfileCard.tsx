import { useId } from 'react';
import { formatNumber, formatPercent } from '../components/format';
import type { ColumnProfile, Histogram } from './columnProfile';

const BAR_WIDTH = 160;

/** Bars of the most frequent values: the column's histogram over its categories. */
function TopValueBars({ column, rowCount }: { column: ColumnProfile; rowCount: number }) {
  const most = Math.max(1, ...column.topValues.map((each) => each.count));
  return (
    <table className="bars">
      <caption>
        Top values of {column.name}
        {!column.topValuesExact && ' (approximate)'}
      </caption>
      <tbody>
        {column.topValues.map((each) => (
          <tr key={each.value}>
            <th scope="row" title={each.value}>
              {each.value}
              {each.truncated && '…'}
            </th>
            <td>
              <svg width={BAR_WIDTH} height="12" role="img" aria-label={`${each.count} rows`}>
                <rect className="bar" x="0" y="1" height="10" width={Math.max(1, (each.count / most) * BAR_WIDTH)} />
              </svg>
            </td>
            <td className="num">
              {each.count}
              {rowCount > 0 && <span className="muted"> ({formatPercent(each.count / rowCount)})</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const HISTOGRAM_HEIGHT = 40;

/** The column's distribution: one bar per bin, as tall as its share of the most counted bin. */
function HistogramBars({ name, histogram }: { name: string; histogram: Histogram }) {
  const most = Math.max(1, ...histogram.counts);
  const width = BAR_WIDTH / histogram.counts.length;
  const low = histogram.edges[0] ?? 0;
  const high = histogram.edges[histogram.edges.length - 1] ?? 0;
  return (
    <figure className="histogram">
      <svg
        width={BAR_WIDTH}
        height={HISTOGRAM_HEIGHT}
        role="img"
        aria-label={`Histogram of ${name}: ${histogram.counts.length} bins from ${formatNumber(low)} to ${formatNumber(high)}`}
      >
        {histogram.counts.map((count, bin) => {
          const height = count === 0 ? 0 : Math.max(1, (count / most) * HISTOGRAM_HEIGHT);
          return (
            <rect key={bin} className="bar" x={bin * width} y={HISTOGRAM_HEIGHT - height} width={Math.max(1, width - 1)} height={height}>
              <title>
                {formatNumber(histogram.edges[bin])} to {formatNumber(histogram.edges[bin + 1])}: {count} rows
              </title>
            </rect>
          );
        })}
      </svg>
      <figcaption className="muted">
        {formatNumber(low)} … {formatNumber(high)}
      </figcaption>
    </figure>
  );
}

/** Where the mean sits between min and max, with one standard deviation either side. */
function RangeBar({ column }: { column: ColumnProfile }) {
  const low = typeof column.min === 'number' ? column.min : null;
  const high = typeof column.max === 'number' ? column.max : null;
  if (low === null || high === null || column.mean === null || high <= low) return null;
  const at = (value: number) => ((Math.min(high, Math.max(low, value)) - low) / (high - low)) * BAR_WIDTH;
  const std = column.std ?? 0;
  return (
    <svg width={BAR_WIDTH} height="16" role="img" aria-label={`mean ${formatNumber(column.mean)} between ${formatNumber(low)} and ${formatNumber(high)}`}>
      <rect className="track" x="0" y="6" width={BAR_WIDTH} height="4" />
      <rect className="bar" x={at(column.mean - std)} y="3" width={Math.max(2, at(column.mean + std) - at(column.mean - std))} height="10" />
      <rect className="mark" x={at(column.mean) - 1} y="0" width="2" height="16" />
    </svg>
  );
}

export function ColumnProfileCard({ column, rowCount }: { column: ColumnProfile; rowCount: number }) {
  const nulls = column.nullFraction;
  // Not built from the column's name: a name may hold spaces, or be another element's id.
  const headingId = useId();
  return (
    <article className="panel column-card" aria-labelledby={headingId}>
      <h3 id={headingId}>
        {column.name} <span className="muted">{column.type}</span>
      </h3>
      <dl className="facts">
        <dt>Null share</dt>
        <dd>
          {nulls === null ? 'unknown' : formatPercent(nulls)}
          {nulls !== null && (
            <svg width={BAR_WIDTH} height="8" role="presentation" className="inline-bar">
              <rect className="track" x="0" y="0" width={BAR_WIDTH} height="8" />
              <rect className="bar warn" x="0" y="0" width={nulls * BAR_WIDTH} height="8" />
            </svg>
          )}
        </dd>
        <dt>Distinct</dt>
        <dd>
          {column.distinctCount === null ? 'unknown' : column.distinctCount}
          {column.distinctCount !== null && !column.distinctExact && ' (at least)'}
        </dd>
        {column.min !== undefined && (
          <>
            <dt>Min</dt>
            <dd>{formatNumber(column.min)}</dd>
            <dt>Max</dt>
            <dd>{formatNumber(column.max)}</dd>
          </>
        )}
        {column.mean !== null && (
          <>
            <dt>Mean ± std</dt>
            <dd>
              {formatNumber(column.mean)} ± {formatNumber(column.std)}
            </dd>
          </>
        )}
      </dl>
      {column.histogram ? <HistogramBars name={column.name} histogram={column.histogram} /> : <RangeBar column={column} />}
      {column.topValues.length > 0 && <TopValueBars column={column} rowCount={rowCount} />}
    </article>
  );
}
