import { describe, expect, it } from 'vitest';
import { editEmphasis, formatWeight, type TextEdit } from '../../../web/src/emphasis.ts';

/** `|` marks the cursor; `[` `]` a selection. */
function parse(marked: string): TextEdit {
  const cursor = marked.indexOf('|');
  if (cursor >= 0) return { text: marked.replace('|', ''), selectionStart: cursor, selectionEnd: cursor };
  const s = marked.indexOf('[');
  const e = marked.indexOf(']') - 1;
  return { text: marked.replace('[', '').replace(']', ''), selectionStart: s, selectionEnd: e };
}
function show(edit: TextEdit | null): string | null {
  if (!edit) return null;
  const { text, selectionStart: s, selectionEnd: e } = edit;
  return text.slice(0, s) + '[' + text.slice(s, e) + ']' + text.slice(e);
}
const up = (m: string) => show(editEmphasis(parse(m), true));
const down = (m: string) => show(editEmphasis(parse(m), false));

describe('editEmphasis (A1111 Ctrl+↑/↓)', () => {
  it('wraps the word under the cursor', () => {
    expect(up('a red ca|t, sitting')).toBe('a red ([cat]:1.1), sitting');
    expect(down('a red ca|t, sitting')).toBe('a red ([cat]:0.9), sitting');
  });

  it('wraps a selection, leaving out surrounding spaces', () => {
    expect(up('a[ red cat ], sitting')).toBe('a ([red cat]:1.1) , sitting');
  });

  it('changes the weight of the group around the cursor and keeps the words selected', () => {
    expect(up('a (red c|at:1.1), sitting')).toBe('a ([red cat]:1.2), sitting');
    expect(down('a (red c|at:1.2), sitting')).toBe('a ([red cat]:1.1), sitting');
  });

  it('repeated presses accumulate without float noise', () => {
    let edit: TextEdit | null = parse('ca|t');
    for (let i = 0; i < 3; i++) edit = editEmphasis(edit!, true);
    expect(show(edit)).toBe('([cat]:1.3)');
    for (let i = 0; i < 5; i++) edit = editEmphasis(edit!, false);
    expect(show(edit)).toBe('([cat]:0.8)');
  });

  it('removes the parentheses when the weight returns to 1', () => {
    expect(down('(ca|t:1.1) dog')).toBe('[cat] dog');
    expect(up('(ca|t:0.9) dog')).toBe('[cat] dog');
  });

  it('moves the multiplier of an extra-network tag by 0.05', () => {
    expect(up('photo, <lora:det|ail:0.8>')).toBe('photo, <[lora:detail:0.85]>');
    expect(down('photo, <lora:det|ail:1>')).toBe('photo, <[lora:detail:0.95]>');
  });

  it('uses the configured steps', () => {
    expect(show(editEmphasis(parse('ca|t'), true, { attentionStep: 0.05 }))).toBe('([cat]:1.05)');
  });

  it('does nothing on an empty word', () => {
    expect(up('a, |, b')).toBeNull();
    expect(up('|')).toBeNull();
  });

  it('writes weights as A1111 does', () => {
    expect(formatWeight(2)).toBe('2.0');
    expect(formatWeight(1.1 + 0.1)).toBe('1.2');
    expect(formatWeight(0.30000000000000004)).toBe('0.3');
  });
});
