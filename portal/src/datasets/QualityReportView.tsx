import { formatDate, formatNumber } from '../components/format';
import { graphql } from '../gql';
import type { QualityReportFieldsFragment } from '../gql/graphql';

// What this view reads of a report, spread by the queries that show one (`...QualityReportFields`).
graphql(`
  fragment QualityReportFields on QualityReport {
    id
    createdAt
    passed
    q
    qConsistency
    qCompleteness
    qAccuracy
    blockingFailures
    checks {
      name
      kind
      dimension
      passed
      blocking
      failingRows
      message
      examples
    }
  }
`);

const DIMENSIONS = [
  ['qConsistency', 'Consistency'],
  ['qCompleteness', 'Completeness'],
  ['qAccuracy', 'Accuracy'],
] as const;

function ExampleRows({ examples }: { examples: unknown }) {
  const rows = Array.isArray(examples) ? (examples as unknown[]) : [];
  if (rows.length === 0) return null;
  const records = rows.filter((row): row is Record<string, unknown> => typeof row === 'object' && row !== null && !Array.isArray(row));
  if (records.length !== rows.length) return <pre tabIndex={0} className="code">{JSON.stringify(examples, null, 2)}</pre>;
  const columns = [...new Set(records.flatMap((row) => Object.keys(row)))];
  return (
    <div className="table-wrap" tabIndex={0}>
      <table className="compact">
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column} scope="col">
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {records.map((row, index) => (
            <tr key={index}>
              {columns.map((column) => (
                <td key={column}>{formatNumber(row[column])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function QualityReportView({ report, versionNumber }: { report: QualityReportFieldsFragment; versionNumber: number }) {
  const failing = report.checks.filter((check) => !check.passed);
  return (
    <section aria-labelledby="quality-heading" className="panel">
      <h2 id="quality-heading">Quality report of version {versionNumber}</h2>
      <p>
        <strong className={report.passed ? 'ok' : 'error'}>{report.passed ? 'Passed' : 'Failed'}</strong>
        {report.blockingFailures.length > 0 && ` · blocking failures: ${report.blockingFailures.join(', ')}`} · checked{' '}
        {formatDate(report.createdAt)}
      </p>
      <dl className="facts" aria-label="Quality score">
        <div>
          <dt>Q</dt>
          <dd>
            <strong>{formatNumber(report.q)}</strong>
          </dd>
        </div>
        {DIMENSIONS.map(([key, label]) => (
          <div key={key}>
            <dt>{label}</dt>
            <dd>
              {formatNumber(report[key])}
              <svg width="120" height="8" role="presentation" className="inline-bar">
                <rect className="track" x="0" y="0" width="120" height="8" />
                {/* Each part is at most a third of Q, which is at most 1. */}
                <rect className="bar" x="0" y="0" height="8" width={Math.max(0, Math.min(1, report[key] * 3)) * 120} />
              </svg>
            </dd>
          </div>
        ))}
      </dl>
      <h3>Checks</h3>
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">Check</th>
              <th scope="col">Dimension</th>
              <th scope="col">Result</th>
              <th scope="col">Failing rows</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {report.checks.map((check) => (
              <tr key={check.name}>
                <td>
                  {check.name} <span className="muted">({check.kind})</span>
                </td>
                <td>{check.dimension}</td>
                <td className={check.passed ? 'ok' : 'error'}>
                  {check.passed ? 'passed' : check.blocking ? 'failed (blocking)' : 'failed'}
                </td>
                <td className="num">{check.failingRows}</td>
                <td>{check.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {failing.map((check) => (
        <details key={check.name}>
          <summary>Example rows failing {check.name}</summary>
          <ExampleRows examples={check.examples} />
        </details>
      ))}
    </section>
  );
}
