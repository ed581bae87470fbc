import { useEffect, useId, useReducer, useRef, useState, type FormEvent, type ReactNode } from 'react';
import type { MutationAction } from '../api/useMutationAction';
import { ErrorMessage } from './ErrorMessage';
import { documentText, isConflict, isDirty, jsonDraftReducer, startDraft } from './jsonDraft';

export interface JsonDocumentEditorProps {
  /** The section's heading, e.g. "Expectations". */
  title: string;
  /** The text area's label, e.g. "Expectations (JSON)". */
  label: string;
  /** The document as the server has it now. */
  document: unknown;
  /** Without it, the document is shown read-only. */
  canEdit: boolean;
  rows: number;
  placeholder: string;
  /** What the document holds, under the text area. */
  help?: ReactNode;
  saveLabel: string;
  /** Said once saved, e.g. "Expectations saved." */
  savedNotice: string;
  /** Runs the save mutation through `action`; resolves to the document as the server stored
   * it, or null when it refused (the problem is then `action.problem`). */
  save: (document: unknown) => Promise<{ stored: unknown } | null>;
  action: MutationAction;
}

/** A JSON document the API keeps (a dataset's expectations, a model's promotion gates), edited
 * as text. Edits are kept when the page's data refreshes; when the server's copy changed under
 * them, the user is told and chooses: go on with theirs (saving overwrites), or load the
 * server's. */
export function JsonDocumentEditor(props: JsonDocumentEditorProps) {
  const { title, label, canEdit, rows, placeholder, help, saveLabel, savedNotice, save, action } = props;
  const server = documentText(props.document);
  const [draft, dispatch] = useReducer(jsonDraftReducer, server, startDraft);
  const [done, setDone] = useState(false);
  const headingId = useId();
  const textArea = useRef<HTMLTextAreaElement>(null);
  useEffect(() => dispatch({ type: 'serverRead', text: server }), [server]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setDone(false);
    let parsed: unknown;
    try {
      parsed = JSON.parse(draft.text);
    } catch (error) {
      action.setProblem({ code: 'INVALID_JSON', message: `${title}: not JSON (${error instanceof Error ? error.message : String(error)})` });
      return;
    }
    const saved = await save(parsed);
    if (saved) {
      dispatch({ type: 'saved', text: documentText(saved.stored) });
      setDone(true);
    }
  }

  if (!canEdit) {
    return (
      <section aria-labelledby={headingId}>
        <h2 id={headingId}>{title}</h2>
        <pre tabIndex={0} className="code">
          {server}
        </pre>
      </section>
    );
  }
  return (
    <form onSubmit={submit} className="panel stack" aria-labelledby={headingId}>
      <h2 id={headingId}>{title}</h2>
      <label>
        {label}
        <textarea
          ref={textArea}
          className="code"
          rows={rows}
          spellCheck={false}
          placeholder={placeholder}
          value={draft.text}
          onChange={(e) => {
            setDone(false);
            dispatch({ type: 'edited', text: e.target.value });
          }}
        />
      </label>
      {help}
      {isConflict(draft) && (
        <div role="alert" className="notice">
          <p>The saved document changed on the server while you were editing it. Saving yours replaces it.</p>
          <button
            type="button"
            onClick={() => {
              dispatch({ type: 'discarded' });
              // The button goes with the conflict: focus goes to the document it loaded.
              textArea.current?.focus();
            }}
          >
            Discard my edits, load the server's
          </button>
        </div>
      )}
      <ErrorMessage error={action.problem} />
      {done && !isDirty(draft) && (
        <p role="status" className="notice">
          {savedNotice}
        </p>
      )}
      <button type="submit" disabled={action.busy}>
        {saveLabel}
      </button>
    </form>
  );
}
