import { useLayoutEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import {
  applySuggestion,
  completionContext,
  suggestions,
  type CompletionContext,
  type CompletionNames,
  type Suggestion,
} from '../autocomplete.ts';
import { editEmphasis } from '../emphasis.ts';
import { highlightPrompt, type SyntaxNames } from '../prompt-syntax.ts';
import { useTokenCount, type TokenCountQuery } from '../token-count.ts';

export interface PromptBoxProps {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  /** Ctrl+Enter. */
  onSubmit?: () => void;
  placeholder?: string;
  rows?: number;
  /** Show the server's token count ("12/75") for this prompt. */
  counter?: TokenCountQuery;
  /** Names to highlight and complete (embeddings, LoRAs, hypernetworks). */
  names?: Partial<CompletionNames> & SyntaxNames;
  /** Where the cursor is, for the extra-networks cards that insert at it. */
  onCursor?: (position: number) => void;
}

interface Completion {
  ctx: CompletionContext;
  items: Suggestion[];
  active: number;
}

/**
 * A prompt textarea: A1111 syntax coloured in an overlay behind the (transparent) text, the token
 * count per 75-token chunk, completion of embedding / LoRA / hypernetwork names, Ctrl+↑/↓ (⌘ on a
 * Mac) to change the emphasis of the selection or of the word under the cursor as A1111 does, and
 * Ctrl+Enter to submit.
 */
export function PromptBox({
  id,
  label,
  value,
  onChange,
  onSubmit,
  placeholder,
  rows = 3,
  counter,
  names,
  onCursor,
}: PromptBoxProps) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const overlay = useRef<HTMLDivElement>(null);
  const pendingSelection = useRef<[number, number] | null>(null);
  const [completion, setCompletion] = useState<Completion | null>(null);
  const { count, error: countError } = useTokenCount(value, counter);
  const pieces = useMemo(() => highlightPrompt(value, names ?? {}), [value, names]);

  useLayoutEffect(() => {
    const sel = pendingSelection.current;
    if (sel && ref.current) {
      ref.current.setSelectionRange(sel[0], sel[1]);
      pendingSelection.current = null;
    }
  });

  /** Suggestions for the text being typed at the cursor, if any. */
  function complete(text: string, cursor: number, selectionEnd: number) {
    onCursor?.(cursor);
    const ctx = names && cursor === selectionEnd ? completionContext(text, cursor) : null;
    const items = ctx
      ? suggestions(ctx, {
          loras: names?.loras ?? [],
          hypernetworks: names?.hypernetworks ?? [],
          embeddings: names?.embeddings ?? [],
        })
      : [];
    setCompletion(ctx && items.length ? { ctx, items, active: 0 } : null);
  }

  function accept(c: Completion, index: number) {
    const next = applySuggestion(value, c.ctx, c.items[index]);
    pendingSelection.current = [next.cursor, next.cursor];
    setCompletion(null);
    onChange(next.text);
    onCursor?.(next.cursor);
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (completion && !(e.ctrlKey || e.metaKey || e.altKey)) {
      const n = completion.items.length;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const step = e.key === 'ArrowDown' ? 1 : n - 1;
        setCompletion({ ...completion, active: (completion.active + step) % n });
        return;
      }
      if (e.key === 'Enter' || e.key === 'Tab') {
        e.preventDefault();
        accept(completion, completion.active);
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        setCompletion(null);
        return;
      }
    }
    if (!(e.ctrlKey || e.metaKey)) return;
    if (e.key === 'Enter') {
      e.preventDefault();
      setCompletion(null);
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

  const listId = `${id}-suggestions`;
  const over = count && count.token_count > count.max_length;
  return (
    <div className="prompt">
      <div className="prompt-head">
        <label className="label" htmlFor={id}>
          {label}
        </label>
        {counter && countError && (
          <span className="token-counter over" aria-label={`${label} tokens`} title={countError}>
            ?
          </span>
        )}
        {counter && count && !countError && (
          <span
            className={`token-counter${over ? ' over' : ''}`}
            aria-label={`${label} tokens`}
            title={`Tokens per 75-token chunk: ${count.chunks.join(' + ')}`}
          >
            {count.token_count}/{count.max_length}
          </span>
        )}
      </div>
      <div className="prompt-editor">
        <div className="prompt-overlay" ref={overlay} aria-hidden="true">
          {pieces.map((p, i) =>
            p.kind === 'text' ? (
              p.text
            ) : (
              <span
                key={i}
                className={`tok-${p.kind}${p.depth !== undefined ? ` depth-${p.depth % 3}` : ''}`}
              >
                {p.text}
              </span>
            ),
          )}
          {/* A final newline needs a line after it to take up room, as in the textarea. */}
          {'\u200b'}
        </div>
        <textarea
          id={id}
          ref={ref}
          rows={rows}
          value={value}
          placeholder={placeholder}
          spellCheck={false}
          aria-autocomplete={names ? 'list' : undefined}
          aria-controls={completion ? listId : undefined}
          aria-activedescendant={completion ? `${listId}-${completion.active}` : undefined}
          onChange={(e) => {
            onChange(e.target.value);
            complete(e.target.value, e.target.selectionStart, e.target.selectionEnd);
          }}
          onClick={(e) =>
            complete(e.currentTarget.value, e.currentTarget.selectionStart, e.currentTarget.selectionEnd)
          }
          onKeyUp={(e) => {
            if (e.key === 'ArrowLeft' || e.key === 'ArrowRight' || e.key === 'Home' || e.key === 'End')
              complete(e.currentTarget.value, e.currentTarget.selectionStart, e.currentTarget.selectionEnd);
          }}
          onBlur={(e) => {
            onCursor?.(e.currentTarget.selectionStart);
            setCompletion(null);
          }}
          onScroll={(e) => {
            if (overlay.current) overlay.current.scrollTop = e.currentTarget.scrollTop;
          }}
          onKeyDown={onKeyDown}
        />
      </div>
      {completion && (
        <ul className="suggestions" id={listId} role="listbox" aria-label={`${label} suggestions`}>
          {completion.items.map((s, i) => (
            <li
              key={`${s.kind}:${s.label}`}
              id={`${listId}-${i}`}
              role="option"
              aria-selected={i === completion.active}
              className={i === completion.active ? 'active' : ''}
              // mousedown, not click: the textarea must keep the focus (a blur closes the list).
              onMouseDown={(e) => {
                e.preventDefault();
                accept(completion, i);
              }}
            >
              <span className="kind">{s.kind}</span> {s.label}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
