import { useEffect, useLayoutEffect, useRef, useState, type FocusEvent, type KeyboardEvent, type ReactNode, type RefObject } from 'react';

// A destructive action asks first, inline: the button is replaced by its question, a button
// that does it and one that does not. Not window.confirm(): that blocks the page, cannot be
// styled or labelled, and a browser test would have to answer a native dialog.
//
// Focus follows the user: on "Cancel" when the question opens (the least destructive choice),
// back on the button when it closes; and when the action removes the whole control (a member
// removed, a token revoked), on `fallbackFocus` instead of being lost on the page's body.

export interface ConfirmButtonProps {
  /** The button's text, e.g. "Remove". */
  children: ReactNode;
  /** Its accessible name where the text alone is ambiguous, e.g. "Remove alice". */
  label?: string;
  /** What is asked, e.g. "Remove alice from the project?" */
  question: string;
  /** The text of the button that does it, e.g. "Yes, remove alice". */
  confirm: string;
  /** The text of the button that does not, "Cancel" unless that would read as the action
   * itself (cancelling a job). */
  dismiss?: string;
  onConfirm: () => Promise<unknown> | void;
  disabled?: boolean;
  className?: string;
  /** Where focus goes when the action removed this control while it had focus. */
  fallbackFocus?: RefObject<HTMLElement | null>;
}

type Step = 'idle' | 'asking' | 'working';

export function ConfirmButton({ children, label, question, confirm, dismiss = 'Cancel', onConfirm, disabled, className, fallbackFocus }: ConfirmButtonProps) {
  const [step, setStep] = useState<Step>('idle');
  const trigger = useRef<HTMLButtonElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  // Where focus goes after the next render: set by the user's own moves only.
  const focusNext = useRef<'trigger' | 'cancel' | null>(null);
  // Whether the user last acted here: a control removed after that takes focus with it.
  const acted = useRef(false);
  const mounted = useRef(true);

  useLayoutEffect(() => {
    const target = focusNext.current === 'trigger' ? trigger.current : focusNext.current === 'cancel' ? cancel.current : null;
    // A button disabled while the page is busy cannot take focus: tried again once enabled.
    if (target && !target.disabled) {
      focusNext.current = null;
      target.focus();
    }
  });

  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
      const lost = document.activeElement === null || document.activeElement === document.body;
      if (acted.current && lost) fallbackFocus?.current?.focus();
    };
    // Read when the control goes (a ref's current value), so mounted once.
  }, [fallbackFocus]);

  function ask() {
    acted.current = true;
    focusNext.current = 'cancel';
    setStep('asking');
  }

  function back() {
    focusNext.current = 'trigger';
    setStep('idle');
  }

  async function go() {
    acted.current = true;
    setStep('working');
    try {
      await onConfirm();
    } finally {
      if (mounted.current) back();
    }
  }

  function leave(event: FocusEvent) {
    // Focus moved on to something else on the page: a later removal is not the user's doing.
    if (event.relatedTarget instanceof Node && !event.currentTarget.contains(event.relatedTarget)) acted.current = false;
  }

  function onKeyDown(event: KeyboardEvent) {
    if (event.key === 'Escape' && step === 'asking') {
      event.preventDefault();
      back();
    }
  }

  if (step === 'idle') {
    return (
      <button ref={trigger} type="button" className={className} aria-label={label} disabled={disabled} onClick={ask} onBlur={leave}>
        {children}
      </button>
    );
  }
  return (
    <span
      role="group"
      aria-label={question}
      onKeyDown={onKeyDown}
      onBlur={leave}
    >
      <span>{question}</span>{' '}
      <button type="button" className="danger" disabled={disabled || step === 'working'} onClick={() => void go()}>
        {confirm}
      </button>{' '}
      <button ref={cancel} type="button" disabled={step === 'working'} onClick={back}>
        {dismiss}
      </button>
    </span>
  );
}
