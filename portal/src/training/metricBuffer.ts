// The job chart's data: first the job's metric history (each key downsampled by the API), then
// live points from `jobEvents`. Held as uPlot wants it, one sorted step column and one value
// column per metric with null where a metric has no point at that step. A step is never added
// twice: a resubscription after a lost connection replays events the chart already has, and
// they are dropped.

export type MetricValues = Record<string, number | null | undefined>;

/** Metrics recorded at every step; every other key is an epoch's value, repeated by each
 * progress event until the next epoch ends (schema.graphql, JobEvent.metrics). */
const PER_STEP_KEYS = new Set(['loss']);

export class MetricBuffer {
  private steps: number[] = [];
  private columns = new Map<string, Array<number | null>>();
  private lastValue = new Map<string, number | null>();

  /** Past this many steps, every other older point is dropped so a long live run stays small:
   * the page's memory must not grow with the hours a job runs (20 events a second for 5
   * minutes is 6,000 steps). A chart is at most a couple of thousand pixels wide, so 4,000
   * points still draw every pixel's worth of detail. */
  constructor(private readonly maxPoints = 4_000) {}

  get keys(): string[] {
    return [...this.columns.keys()];
  }

  get length(): number {
    return this.steps.length;
  }

  get lastStep(): number | null {
    return this.steps.length > 0 ? (this.steps[this.steps.length - 1] ?? null) : null;
  }

  private column(key: string): Array<number | null> {
    let column = this.columns.get(key);
    if (!column) {
      column = new Array<number | null>(this.steps.length).fill(null);
      this.columns.set(key, column);
    }
    return column;
  }

  /** Merges each key's history (any order, any steps) into the buffer. */
  replay(histories: Record<string, ReadonlyArray<{ step: number; value: number | null }>>): void {
    const rows = new Map<number, MetricValues>();
    this.steps.forEach((step, index) => {
      const row: MetricValues = {};
      for (const [key, column] of this.columns) row[key] = column[index] ?? null;
      rows.set(step, row);
    });
    for (const [key, points] of Object.entries(histories)) {
      this.column(key);
      for (const point of points) {
        const row = rows.get(point.step) ?? {};
        row[key] = point.value;
        rows.set(point.step, row);
      }
    }
    const steps = [...rows.keys()].sort((a, b) => a - b);
    this.steps = steps;
    for (const key of this.columns.keys()) {
      this.columns.set(
        key,
        steps.map((step) => rows.get(step)?.[key] ?? null),
      );
    }
    for (const key of this.columns.keys()) {
      const column = this.columns.get(key) ?? [];
      let last: number | null = null;
      for (const value of column) if (value !== null) last = value;
      this.lastValue.set(key, last);
    }
  }

  /** Forgets every point after `step`: a resumed job writes the steps after its checkpoint
   * again, and the history drops the first run's points of them. */
  truncateAfter(step: number): void {
    let keep = this.steps.length;
    while (keep > 0 && (this.steps[keep - 1] ?? 0) > step) keep -= 1;
    this.steps.length = keep;
    for (const column of this.columns.values()) column.length = keep;
    for (const [key, column] of this.columns) {
      let last: number | null = null;
      for (const value of column) if (value !== null) last = value;
      this.lastValue.set(key, last);
    }
  }

  /** Empties the buffer, before a fresh replay. */
  clear(): void {
    this.steps = [];
    this.columns.clear();
    this.lastValue.clear();
  }

  /** Adds a live progress event's metrics at `step`; false if the step is already charted. */
  append(step: number, metrics: MetricValues): boolean {
    const last = this.lastStep;
    if (last !== null && step <= last) return false;
    const row: Record<string, number | null> = {};
    let any = false;
    for (const [key, raw] of Object.entries(metrics)) {
      if (raw === undefined) continue;
      const value = typeof raw === 'number' && Number.isFinite(raw) ? raw : null;
      // An epoch's value is charted once, where it first appears, not again at every step.
      if (!PER_STEP_KEYS.has(key) && this.lastValue.has(key) && this.lastValue.get(key) === value) continue;
      row[key] = value;
      this.lastValue.set(key, value);
      any = true;
    }
    if (!any) return false;
    for (const key of Object.keys(row)) this.column(key);
    this.steps.push(step);
    for (const [key, column] of this.columns) column.push(row[key] ?? null);
    if (this.steps.length > this.maxPoints) this.thin();
    return true;
  }

  /** Drops every other point of the older half: the recent run stays at full detail, and no
   * epoch's value is lost while those points are few. A key that changes at every step (a
   * learning rate schedule) makes every point an "epoch value": then they are thinned too,
   * or the buffer would never shrink. */
  private thin(): void {
    const half = Math.floor(this.steps.length / 2);
    const epochColumns = [...this.columns].filter(([key]) => !PER_STEP_KEYS.has(key)).map(([, column]) => column);
    const holdsEpochValue = (index: number) => epochColumns.some((column) => column[index] !== null && column[index] !== undefined);
    let keep = (_: unknown, index: number) => index >= half || index % 2 === 0 || holdsEpochValue(index);
    const kept = this.steps.filter(keep).length;
    if (kept > (this.maxPoints * 7) / 8) keep = (_: unknown, index: number) => index >= half || index % 2 === 0;
    this.steps = this.steps.filter(keep);
    for (const [key, column] of this.columns) this.columns.set(key, column.filter(keep));
  }

  /** uPlot's data: [steps, ...one column per key in `keys` order]. */
  toAligned(): [number[], ...Array<Array<number | null>>] {
    return [this.steps.slice(), ...this.keys.map((key) => (this.columns.get(key) ?? []).slice())];
  }
}
