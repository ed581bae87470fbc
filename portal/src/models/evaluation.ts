// A model version's `metrics` JSON (its evaluation on the held-out split), read into what the
// evaluation panel shows. Binary classifiers report precision/recall/f1/roc_auc of the positive
// class, others their macro averages (`*_macro`); regressors rmse, mae and r2.

export interface Figure {
  key: string;
  label: string;
  value: number;
}

const FIGURES: Array<[string, string]> = [
  ['accuracy', 'Accuracy'],
  ['precision', 'Precision'],
  ['precision_macro', 'Precision (macro)'],
  ['recall', 'Recall'],
  ['recall_macro', 'Recall (macro)'],
  ['f1', 'F1'],
  ['f1_macro', 'F1 (macro)'],
  ['roc_auc', 'ROC AUC'],
  ['roc_auc_macro', 'ROC AUC (macro)'],
  ['rmse', 'RMSE'],
  ['mae', 'MAE'],
  ['r2', 'R²'],
  ['loss', 'Loss'],
];

export interface Evaluation {
  figures: Figure[];
  labels: string[];
  confusion: number[][] | null;
  examples: number | null;
}

export function readEvaluation(metrics: unknown): Evaluation {
  const values = (typeof metrics === 'object' && metrics !== null ? metrics : {}) as Record<string, unknown>;
  const figures = FIGURES.flatMap(([key, label]) => {
    const value = values[key];
    return typeof value === 'number' && Number.isFinite(value) ? [{ key, label, value }] : [];
  });
  const matrix = values.confusion_matrix;
  const confusion =
    Array.isArray(matrix) && matrix.every((row) => Array.isArray(row) && row.every((cell) => typeof cell === 'number'))
      ? (matrix as number[][])
      : null;
  const labels = Array.isArray(values.labels) ? values.labels.map((label) => String(label)) : (confusion ?? []).map((_, index) => String(index));
  return {
    figures,
    labels,
    confusion,
    examples: typeof values.validation_examples === 'number' ? values.validation_examples : null,
  };
}
