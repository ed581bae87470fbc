import { formatNumber } from '../components/format';
import { readEvaluation } from './evaluation';

/** Counts as a heatmap: each cell's shade is its share of its true class's row. */
function ConfusionMatrix({ labels, matrix }: { labels: string[]; matrix: number[][] }) {
  return (
    <div className="table-wrap" tabIndex={0}>
      <table className="heatmap">
        <caption>Confusion matrix: rows are the true class, columns the predicted one</caption>
        <thead>
          <tr>
            <th scope="col">true \ predicted</th>
            {labels.map((label) => (
              <th key={label} scope="col">
                {label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, rowIndex) => {
            const total = row.reduce((sum, cell) => sum + cell, 0);
            return (
              <tr key={rowIndex}>
                <th scope="row">{labels[rowIndex] ?? rowIndex}</th>
                {row.map((cell, columnIndex) => {
                  const share = total > 0 ? cell / total : 0;
                  return (
                    <td
                      key={columnIndex}
                      className="num"
                      // The CSSOM, not an inline style attribute: allowed by the CSP.
                      style={{ background: `rgba(29, 78, 216, ${share.toFixed(3)})`, color: share > 0.5 ? '#fff' : undefined }}
                    >
                      {cell}
                    </td>
                  );
                })}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function EvaluationView({ metrics, title }: { metrics: unknown; title: string }) {
  const evaluation = readEvaluation(metrics);
  return (
    <section aria-label={title} className="panel">
      <h3>{title}</h3>
      {evaluation.figures.length === 0 && !evaluation.confusion ? (
        <p className="muted">No evaluation: the version was trained on every row, or uploaded without one.</p>
      ) : (
        <>
          <dl className="facts">
            {evaluation.figures.map((figure) => (
              <div key={figure.key}>
                <dt>{figure.label}</dt>
                <dd>{formatNumber(figure.value)}</dd>
              </div>
            ))}
            {evaluation.examples !== null && (
              <div>
                <dt>Validation rows</dt>
                <dd>{evaluation.examples}</dd>
              </div>
            )}
          </dl>
          {evaluation.confusion && <ConfusionMatrix labels={evaluation.labels} matrix={evaluation.confusion} />}
        </>
      )}
    </section>
  );
}
