// A dataset version's `columnStats` JSON, read into what the profile shows. The API documents
// its keys (schema.graphql, DatasetVersion.columnStats); anything else in it is ignored, and a
// missing key shows as unknown rather than failing the page.

export interface TopValue {
  value: string;
  count: number;
  truncated: boolean;
}

/** Equal-width bins of a number column: `edges` has one more entry than `counts`. */
export interface Histogram {
  edges: number[];
  counts: number[];
}

export interface ColumnProfile {
  name: string;
  type: string;
  nullFraction: number | null;
  distinctCount: number | null;
  distinctExact: boolean;
  min: unknown;
  max: unknown;
  mean: number | null;
  std: number | null;
  topValues: TopValue[];
  topValuesExact: boolean;
  histogram: Histogram | null;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function numbersOf(value: unknown): number[] | null {
  if (!Array.isArray(value)) return null;
  const numbers = value.map(numberOrNull);
  return numbers.every((each): each is number => each !== null) ? numbers : null;
}

/** The column's histogram, or null where the entry is missing or not a well-formed one. */
export function histogramOf(value: unknown): Histogram | null {
  if (typeof value !== 'object' || value === null) return null;
  const { edges, counts } = value as Record<string, unknown>;
  const edgeValues = numbersOf(edges);
  const countValues = numbersOf(counts);
  if (!edgeValues || !countValues || countValues.length === 0) return null;
  if (edgeValues.length !== countValues.length + 1) return null;
  return { edges: edgeValues, counts: countValues };
}

export function columnProfiles(columns: ReadonlyArray<{ name: string; type: string }>, stats: unknown): ColumnProfile[] {
  const byName = (typeof stats === 'object' && stats !== null ? stats : {}) as Record<string, Record<string, unknown> | undefined>;
  return columns.map((column) => {
    const entry = byName[column.name] ?? {};
    const top = Array.isArray(entry.topValues) ? (entry.topValues as Array<Record<string, unknown>>) : [];
    return {
      name: column.name,
      type: typeof entry.type === 'string' ? entry.type : column.type,
      nullFraction: numberOrNull(entry.nullFraction),
      distinctCount: numberOrNull(entry.distinctCount),
      distinctExact: entry.distinctExact === true,
      min: entry.min,
      max: entry.max,
      mean: numberOrNull(entry.mean),
      std: numberOrNull(entry.std),
      topValues: top.map((each) => ({
        value: each.value === null ? '(null)' : typeof each.value === 'string' ? each.value : JSON.stringify(each.value),
        count: numberOrNull(each.count) ?? 0,
        truncated: each.truncated === true,
      })),
      topValuesExact: entry.topValuesExact !== false,
      histogram: histogramOf(entry.histogram),
    };
  });
}
