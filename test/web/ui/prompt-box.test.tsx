// @vitest-environment happy-dom
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { useState } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PromptBox } from '../../../web/src/components/PromptBox.tsx';

function Harness({ initial, onSubmit }: { initial: string; onSubmit?: () => void }) {
  const [value, setValue] = useState(initial);
  return <PromptBox id="p" label="Prompt" value={value} onChange={setValue} onSubmit={onSubmit} />;
}

function box(): HTMLTextAreaElement {
  return screen.getByLabelText('Prompt') as HTMLTextAreaElement;
}

afterEach(cleanup);

describe('PromptBox', () => {
  it('Ctrl+↑ emphasises the word under the cursor and keeps it selected; Ctrl+↓ takes it back', () => {
    render(<Harness initial="a cat on a mat" />);
    const t = box();
    t.focus();
    t.setSelectionRange(3, 3);
    act(() => {
      fireEvent.keyDown(t, { key: 'ArrowUp', ctrlKey: true });
    });
    expect(t.value).toBe('a (cat:1.1) on a mat');
    expect([t.selectionStart, t.selectionEnd]).toEqual([3, 6]);
    act(() => {
      fireEvent.keyDown(t, { key: 'ArrowUp', ctrlKey: true });
    });
    expect(t.value).toBe('a (cat:1.2) on a mat');
    for (let i = 0; i < 2; i++) {
      act(() => {
        fireEvent.keyDown(t, { key: 'ArrowDown', ctrlKey: true });
      });
    }
    expect(t.value).toBe('a cat on a mat');
    expect([t.selectionStart, t.selectionEnd]).toEqual([2, 5]);
  });

  it('⌘ works like Ctrl; arrows without a modifier leave the text alone', () => {
    render(<Harness initial="dog" />);
    const t = box();
    t.setSelectionRange(1, 1);
    fireEvent.keyDown(t, { key: 'ArrowDown', metaKey: true });
    expect(t.value).toBe('(dog:0.9)');
    fireEvent.keyDown(t, { key: 'ArrowUp' });
    expect(t.value).toBe('(dog:0.9)');
  });

  it('Ctrl+Enter submits', () => {
    const submit = vi.fn();
    render(<Harness initial="x" onSubmit={submit} />);
    fireEvent.keyDown(box(), { key: 'Enter', ctrlKey: true });
    expect(submit).toHaveBeenCalledTimes(1);
    fireEvent.keyDown(box(), { key: 'Enter' });
    expect(submit).toHaveBeenCalledTimes(1);
  });
});
