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

  it('completes a LoRA name with the keyboard: ↓ moves, Enter inserts <lora:name:1>, the cursor after it', () => {
    const names = { loras: ['add_detail', 'adventure'], hypernetworks: [], embeddings: ['easyneg'] };
    function WithNames() {
      const [value, setValue] = useState('');
      return <PromptBox id="p" label="Prompt" value={value} onChange={setValue} names={names} />;
    }
    render(<WithNames />);
    const t = box();
    t.focus();
    fireEvent.change(t, { target: { value: 'a cat <lora:ad', selectionStart: 14, selectionEnd: 14 } });
    const options = screen.getAllByRole('option');
    expect(options.map((o) => o.textContent)).toEqual(['lora add_detail', 'lora adventure']);
    expect(options[0].getAttribute('aria-selected')).toBe('true');
    fireEvent.keyDown(t, { key: 'ArrowDown' });
    expect(screen.getAllByRole('option')[1].getAttribute('aria-selected')).toBe('true');
    act(() => {
      fireEvent.keyDown(t, { key: 'Enter' });
    });
    expect(t.value).toBe('a cat <lora:adventure:1>');
    expect(t.selectionStart).toBe(t.value.length);
    expect(screen.queryByRole('listbox')).toBeNull();
  });

  it('completes an embedding by mouse; Escape closes the list and Enter then types on', () => {
    const names = { loras: [], hypernetworks: [], embeddings: ['easynegative'] };
    const submit = vi.fn();
    function WithNames() {
      const [value, setValue] = useState('');
      return (
        <PromptBox id="p" label="Prompt" value={value} onChange={setValue} names={names} onSubmit={submit} />
      );
    }
    render(<WithNames />);
    const t = box();
    fireEvent.change(t, { target: { value: 'photo, easy', selectionStart: 11, selectionEnd: 11 } });
    expect(screen.getByRole('listbox').textContent).toContain('easynegative');
    fireEvent.keyDown(t, { key: 'Escape' });
    expect(screen.queryByRole('listbox')).toBeNull();
    fireEvent.change(t, { target: { value: 'photo, easyn', selectionStart: 12, selectionEnd: 12 } });
    act(() => {
      fireEvent.mouseDown(screen.getByRole('option', { name: /easynegative/ }));
    });
    expect(t.value).toBe('photo, easynegative');
    expect(submit).not.toHaveBeenCalled();
  });

  it('draws the prompt behind the textarea with the syntax marked, the same text', () => {
    const names = { embeddingNames: new Set(['easyneg']) };
    const { container } = render(
      <PromptBox
        id="p"
        label="Prompt"
        value="(cat:1.2) <lora:x:1> easyneg BREAK"
        onChange={() => undefined}
        names={names}
      />,
    );
    const overlay = container.querySelector('.prompt-overlay')!;
    expect(overlay.getAttribute('aria-hidden')).toBe('true');
    expect(overlay.textContent!.replace('\u200b', '')).toBe('(cat:1.2) <lora:x:1> easyneg BREAK');
    expect(overlay.querySelector('.tok-weight')!.textContent).toBe(':1.2');
    expect(overlay.querySelector('.tok-network')!.textContent).toBe('<lora:x:1>');
    expect(overlay.querySelector('.tok-embedding')!.textContent).toBe('easyneg');
    expect(overlay.querySelector('.tok-break')!.textContent).toBe('BREAK');
  });
});
