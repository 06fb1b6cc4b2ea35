import { useLayoutEffect, useRef, type KeyboardEvent } from 'react';
import { editEmphasis } from '../emphasis.ts';

export interface PromptBoxProps {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  /** Ctrl+Enter. */
  onSubmit?: () => void;
  placeholder?: string;
  rows?: number;
}

/**
 * A prompt textarea: Ctrl+↑/↓ (⌘ on a Mac) change the emphasis of the selection or of the word under
 * the cursor as A1111 does; Ctrl+Enter submits.
 */
export function PromptBox({ id, label, value, onChange, onSubmit, placeholder, rows = 3 }: PromptBoxProps) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const pendingSelection = useRef<[number, number] | null>(null);

  useLayoutEffect(() => {
    const sel = pendingSelection.current;
    if (sel && ref.current) {
      ref.current.setSelectionRange(sel[0], sel[1]);
      pendingSelection.current = null;
    }
  });

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (!(e.ctrlKey || e.metaKey)) return;
    if (e.key === 'Enter') {
      e.preventDefault();
      onSubmit?.();
      return;
    }
    if (e.key !== 'ArrowUp' && e.key !== 'ArrowDown') return;
    const t = e.currentTarget;
    const next = editEmphasis(
      { text: t.value, selectionStart: t.selectionStart, selectionEnd: t.selectionEnd },
      e.key === 'ArrowUp',
    );
    e.preventDefault();
    if (!next) return;
    pendingSelection.current = [next.selectionStart, next.selectionEnd];
    if (next.text === t.value) t.setSelectionRange(next.selectionStart, next.selectionEnd);
    else onChange(next.text);
  }

  return (
    <label className="prompt">
      <span className="label">{label}</span>
      <textarea
        id={id}
        ref={ref}
        rows={rows}
        value={value}
        placeholder={placeholder}
        spellCheck={false}
        onChange={(e) => onChange(e.target.value)}
        onKeyDown={onKeyDown}
      />
    </label>
  );
}
