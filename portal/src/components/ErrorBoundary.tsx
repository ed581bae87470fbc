import { Component, type ErrorInfo, type ReactNode } from 'react';
import { describeError } from '../api/errors';

interface State {
  error: unknown;
}

/** A page that throws shows what went wrong and a way back, never a blank screen. */
export class ErrorBoundary extends Component<{ children: ReactNode }, State> {
  state: State = { error: null };

  static getDerivedStateFromError(error: unknown): State {
    return { error };
  }

  componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error('portal page failed', error, info.componentStack);
  }

  render() {
    if (this.state.error === null) return this.props.children;
    return (
      <section className="panel" aria-labelledby="page-error-heading">
        <h1 id="page-error-heading">This page failed</h1>
        <p role="alert" className="error">
          {describeError(this.state.error)}
        </p>
        <button type="button" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </section>
    );
  }
}
