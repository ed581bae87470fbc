import type { JobState } from '../gql/graphql';

export const TERMINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

export function isTerminal(state: JobState): boolean {
  return TERMINAL_JOB_STATES.has(state);
}

export function stateLabel(state: JobState): string {
  return state.charAt(0) + state.slice(1).toLowerCase();
}
