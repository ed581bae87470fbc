import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { useRef, useState } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfirmButton } from './ConfirmButton';

afterEach(cleanup);

function Remove({ onConfirm }: { onConfirm: () => Promise<unknown> | void }) {
  return (
    <ConfirmButton className="danger" label="Remove alice" question="Remove alice from Fraud?" confirm="Yes, remove alice" onConfirm={onConfirm}>
      Remove
    </ConfirmButton>
  );
}

describe('ConfirmButton', () => {
  it('asks first: nothing is done until the question is answered yes', async () => {
    const onConfirm = vi.fn(async () => {});
    render(<Remove onConfirm={onConfirm} />);
    fireEvent.click(screen.getByRole('button', { name: 'Remove alice' }));
    expect(onConfirm).not.toHaveBeenCalled();
    const question = screen.getByRole('group', { name: 'Remove alice from Fraud?' });
    expect(question.textContent).toContain('Remove alice from Fraud?');
    // The least destructive choice has the focus.
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Cancel' }));
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Yes, remove alice' }));
    });
    expect(onConfirm).toHaveBeenCalledTimes(1);
    // Done: the button is back, and has the focus again.
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Remove alice' }));
  });

  it('is cancelled by its Cancel button or by Escape, focus back on the button', () => {
    const onConfirm = vi.fn();
    render(<Remove onConfirm={onConfirm} />);
    fireEvent.click(screen.getByRole('button', { name: 'Remove alice' }));
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('group')).toBeNull();
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Remove alice' }));

    fireEvent.click(screen.getByRole('button', { name: 'Remove alice' }));
    fireEvent.keyDown(screen.getByRole('button', { name: 'Cancel' }), { key: 'Escape' });
    expect(screen.queryByRole('group')).toBeNull();
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Remove alice' }));
    expect(onConfirm).not.toHaveBeenCalled();
  });

  it('names its way back as told, where "Cancel" would read as the action itself', () => {
    const onConfirm = vi.fn();
    render(
      <ConfirmButton question="Cancel the training of wine?" confirm="Yes, cancel the job" dismiss="Keep the job" onConfirm={onConfirm}>
        Cancel job
      </ConfirmButton>,
    );
    fireEvent.click(screen.getByRole('button', { name: 'Cancel job' }));
    expect(screen.queryByRole('button', { name: 'Cancel' })).toBeNull();
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Keep the job' }));
    fireEvent.click(screen.getByRole('button', { name: 'Keep the job' }));
    expect(onConfirm).not.toHaveBeenCalled();
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Cancel job' }));
  });

  it('gives focus back to its button once the page is no longer busy', async () => {
    let finish: () => void = () => {};
    // The page's mutation starts with the action and ends after it: the page is busy meanwhile.
    function Busy() {
      const [busy, setBusy] = useState(false);
      finish = () => setBusy(false);
      return (
        <ConfirmButton label="Remove alice" question="Remove alice?" confirm="Yes, remove alice" disabled={busy} onConfirm={() => setBusy(true)}>
          Remove
        </ConfirmButton>
      );
    }
    render(<Busy />);
    fireEvent.click(screen.getByRole('button', { name: 'Remove alice' }));
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Yes, remove alice' }));
    });
    // Back, but disabled while the page's mutation runs: it cannot hold focus yet.
    expect((screen.getByRole('button', { name: 'Remove alice' }) as HTMLButtonElement).disabled).toBe(true);
    act(() => finish());
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Remove alice' }));
  });

  it('hands focus to the fallback when its action removed it', async () => {
    function Members() {
      const [members, setMembers] = useState(['alice']);
      const heading = useRef<HTMLHeadingElement>(null);
      return (
        <section>
          <h2 ref={heading} tabIndex={-1}>
            Members
          </h2>
          {members.map((name) => (
            <ConfirmButton
              key={name}
              label={`Remove ${name}`}
              question={`Remove ${name}?`}
              confirm={`Yes, remove ${name}`}
              onConfirm={() => setMembers([])}
              fallbackFocus={heading}
            >
              Remove
            </ConfirmButton>
          ))}
        </section>
      );
    }
    render(<Members />);
    fireEvent.click(screen.getByRole('button', { name: 'Remove alice' }));
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Yes, remove alice' }));
    });
    expect(screen.queryByRole('button', { name: 'Remove alice' })).toBeNull();
    expect(document.activeElement).toBe(screen.getByRole('heading', { name: 'Members' }));
  });
});
