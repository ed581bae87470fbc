// An edited JSON document beside the server's copy, as a pure reducer: a refresh of the
// server's data never overwrites the user's unsaved edits. `base` is the server text the edit
// started from; the edit is dirty while `text` differs from it, and in conflict when the server's
// copy changed under it, which the user settles (keep editing, or load the server's).

export interface JsonDraft {
  /** The server's document, as last read. */
  server: string;
  /** The server text the edit started from. */
  base: string;
  /** What the editor holds. */
  text: string;
}

export type JsonDraftAction =
  | { type: 'serverRead'; text: string }
  | { type: 'edited'; text: string }
  /** Saved: `text` is the document as the server stored it. */
  | { type: 'saved'; text: string }
  /** Edits dropped for the server's document. */
  | { type: 'discarded' };

/** A document as the editor shows it: two-space JSON, an absent one as an empty list. */
export function documentText(document: unknown): string {
  return JSON.stringify(document ?? [], null, 2);
}

export function startDraft(server: string): JsonDraft {
  return { server, base: server, text: server };
}

export function isDirty(draft: JsonDraft): boolean {
  return draft.text !== draft.base;
}

/** The server's document changed while the user was editing an older one. */
export function isConflict(draft: JsonDraft): boolean {
  return isDirty(draft) && draft.base !== draft.server;
}

export function jsonDraftReducer(draft: JsonDraft, action: JsonDraftAction): JsonDraft {
  switch (action.type) {
    case 'serverRead':
      if (action.text === draft.server) return draft;
      // Nothing edited, or the edit is what the server now has: follow the server.
      if (!isDirty(draft) || draft.text === action.text) return startDraft(action.text);
      return { ...draft, server: action.text };
    case 'edited':
      return { ...draft, text: action.text };
    case 'saved':
      // Clean from here; the refreshed server copy, when it comes, replaces it (it is the same
      // document unless someone saved since).
      return { ...draft, base: action.text, text: action.text };
    case 'discarded':
      return startDraft(draft.server);
  }
}
