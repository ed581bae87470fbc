import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { useMutationAction } from '../api/useMutationAction';
import { JsonDocumentEditor } from './JsonDocumentEditor';
import { documentText, isConflict, jsonDraftReducer, startDraft } from './jsonDraft';

afterEach(cleanup);

const NOT_NULL = [{ kind: 'not_null', column: 'amount' }];
const RANGE = [{ kind: 'range', column: 'amount', min: 0 }];

describe('jsonDraftReducer', () => {
  it('follows the server while nothing is edited, and keeps edits when it changes under them', () => {
    let draft = startDraft(documentText(NOT_NULL));
    draft = jsonDraftReducer(draft, { type: 'serverRead', text: documentText(RANGE) });
    expect(draft.text).toBe(documentText(RANGE));
    draft = jsonDraftReducer(draft, { type: 'edited', text: '[]' });
    draft = jsonDraftReducer(draft, { type: 'serverRead', text: documentText(RANGE) });
    expect(draft.text).toBe('[]');
    expect(isConflict(draft)).toBe(false);
    draft = jsonDraftReducer(draft, { type: 'serverRead', text: documentText(NOT_NULL) });
    expect(draft.text).toBe('[]');
    expect(isConflict(draft)).toBe(true);
    draft = jsonDraftReducer(draft, { type: 'discarded' });
    expect(draft.text).toBe(documentText(NOT_NULL));
    expect(isConflict(draft)).toBe(false);
  });

  it('is clean once saved, and takes the refreshed copy without a conflict', () => {
    let draft = jsonDraftReducer(startDraft('[]'), { type: 'edited', text: '[ {"kind":"unique","column":"id"} ]' });
    const stored = documentText([{ kind: 'unique', column: 'id' }]);
    draft = jsonDraftReducer(draft, { type: 'saved', text: stored });
    draft = jsonDraftReducer(draft, { type: 'serverRead', text: stored });
    expect(draft).toEqual(startDraft(stored));
  });
});

function Editor({ document, saved }: { document: unknown; saved?: unknown }) {
  const action = useMutationAction();
  return (
    <JsonDocumentEditor
      title="Expectations"
      label="Expectations (JSON)"
      document={document}
      canEdit
      rows={4}
      placeholder="[]"
      saveLabel="Save expectations"
      savedNotice="Expectations saved."
      action={action}
      save={async (parsed) => ({ stored: saved ?? parsed })}
    />
  );
}

const box = () => screen.getByLabelText('Expectations (JSON)') as HTMLTextAreaElement;

describe('JsonDocumentEditor', () => {
  it('keeps unsaved edits when the server data refreshes', () => {
    const { rerender } = render(<Editor document={NOT_NULL} />);
    expect(box().value).toBe(documentText(NOT_NULL));
    fireEvent.change(box(), { target: { value: '[{"kind": "unique", "column": "id"}]' } });
    // The page's query read again: the same document, as a new object.
    rerender(<Editor document={[{ kind: 'not_null', column: 'amount' }]} />);
    expect(box().value).toBe('[{"kind": "unique", "column": "id"}]');
    expect(screen.queryByRole('button', { name: "Discard my edits, load the server's" })).toBeNull();
  });

  it('says when the server’s document changed under an edit, and loads it on request', () => {
    const { rerender } = render(<Editor document={NOT_NULL} />);
    fireEvent.change(box(), { target: { value: '[]' } });
    rerender(<Editor document={RANGE} />);
    expect(box().value).toBe('[]');
    expect(screen.getByRole('alert').textContent).toContain('changed on the server');
    fireEvent.click(screen.getByRole('button', { name: "Discard my edits, load the server's" }));
    expect(box().value).toBe(documentText(RANGE));
    expect(screen.queryByRole('alert')).toBeNull();
    // The button went with the notice: focus is on the document it loaded.
    expect(document.activeElement).toBe(box());
  });

  it('follows the server while nothing is edited, and refuses text that is not JSON', async () => {
    const { rerender } = render(<Editor document={NOT_NULL} />);
    rerender(<Editor document={RANGE} />);
    expect(box().value).toBe(documentText(RANGE));
    fireEvent.change(box(), { target: { value: '[{' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Save expectations' }));
    });
    expect(screen.getByRole('alert').textContent).toMatch(/Expectations: not JSON .*\(INVALID_JSON\)/);
    expect(box().value).toBe('[{');
  });

  it('shows the document as the server stored it once saved', async () => {
    render(<Editor document={[]} saved={RANGE} />);
    fireEvent.change(box(), { target: { value: '[{"kind":"range","column":"amount","min":0}]' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Save expectations' }));
    });
    expect(screen.getByRole('status').textContent).toBe('Expectations saved.');
    expect(box().value).toBe(documentText(RANGE));
  });
});
