import { useRef, useState } from 'react';
import { api, type PromptStyle } from '../api.ts';
import { insertAt, removeFromPrompt } from '../autocomplete.ts';
import { useNetworkNames } from '../networks.ts';
import { useServer } from '../server-state.tsx';
import { applyStyleTexts } from '../style-text.ts';
import { ExtraNetworks } from './ExtraNetworks.tsx';
import type { Bound } from './fields.tsx';
import { PromptBox } from './PromptBox.tsx';

export interface TopRowProps {
  mode: 'txt2img' | 'img2img';
  form: Bound;
  running: boolean;
  onGenerate: () => void;
  styles: PromptStyle[];
}

/** Save the prompt and negative prompt as a style (styles.csv on the server). */
function SaveStyle({ mode, form, onDone }: { mode: string; form: Bound; onDone: () => void }) {
  const { reload } = useServer();
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const save = async () => {
    setError(null);
    try {
      await api.saveStyle({
        name,
        prompt: String(form.state.prompt ?? ''),
        negative_prompt: String(form.state.negative_prompt ?? ''),
      });
      await reload();
      onDone();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <div className="style-save" role="group" aria-label="Save style">
      <input
        id={`${mode}-style-name`}
        aria-label="Style name"
        placeholder="Style name"
        value={name}
        autoFocus
        onChange={(e) => setName(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter') void save();
          if (e.key === 'Escape') onDone();
        }}
      />
      <button onClick={() => void save()} disabled={!name.trim()}>
        Save
      </button>
      <button className="secondary" onClick={onDone}>
        Cancel
      </button>
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

/** Prompt, negative prompt, styles, extra networks and Generate / Interrupt / Skip. */
export function TopRow({ mode, form, running, onGenerate, styles }: TopRowProps) {
  const [stopError, setStopError] = useState<string | null>(null);
  const [networksOpen, setNetworksOpen] = useState(false);
  const [saving, setSaving] = useState(false);
  const names = useNetworkNames();
  const cursor = useRef<number | null>(null);
  const stop = (call: () => Promise<unknown>) => {
    setStopError(null);
    call().catch((e: Error) => setStopError(e.message));
  };
  const selectedStyles = (form.state.styles as string[] | undefined) ?? [];
  const steps = Number(form.state.steps) || 20;
  const prompt = String(form.state.prompt ?? '');
  return (
    <>
      <div className="toprow">
        <div className="prompts">
          <PromptBox
            id={`${mode}-prompt`}
            label="Prompt"
            value={prompt}
            onChange={(v) => form.set('prompt', v)}
            onSubmit={onGenerate}
            placeholder="Prompt (Ctrl+Enter to generate, Ctrl+↑/↓ to change emphasis)"
            counter={{ steps, styles: selectedStyles }}
            names={names}
            onCursor={(p) => (cursor.current = p)}
          />
          <PromptBox
            id={`${mode}-negative`}
            label="Negative prompt"
            value={String(form.state.negative_prompt ?? '')}
            onChange={(v) => form.set('negative_prompt', v)}
            onSubmit={onGenerate}
            rows={2}
            placeholder="Negative prompt"
            counter={{ negative: true, steps, styles: selectedStyles }}
            names={names}
          />
          {styles.length > 0 && (
            <div className="styles" role="group" aria-label="Styles">
              <span className="label">Styles</span>
              {styles.map((s) => (
                <label key={s.name} className="chip">
                  <input
                    type="checkbox"
                    checked={selectedStyles.includes(s.name)}
                    onChange={(e) =>
                      form.set(
                        'styles',
                        e.target.checked
                          ? [...selectedStyles, s.name]
                          : selectedStyles.filter((n) => n !== s.name),
                      )
                    }
                  />
                  {s.name}
                </label>
              ))}
            </div>
          )}
          <div className="prompt-tools">
            <button
              className={networksOpen ? 'active' : ''}
              aria-expanded={networksOpen}
              onClick={() => setNetworksOpen(!networksOpen)}
            >
              Extra networks
            </button>
            <button
              title="Write the selected styles into the prompts and unselect them"
              disabled={selectedStyles.length === 0}
              onClick={() => {
                const next = applyStyleTexts(
                  prompt,
                  String(form.state.negative_prompt ?? ''),
                  selectedStyles,
                  styles,
                );
                form.set('prompt', next.prompt);
                form.set('negative_prompt', next.negative);
                form.set('styles', []);
              }}
            >
              Apply styles
            </button>
            <button title="Save the prompts as a new style" onClick={() => setSaving(!saving)}>
              Save style
            </button>
          </div>
          {saving && <SaveStyle mode={mode} form={form} onDone={() => setSaving(false)} />}
        </div>
        <div className="buttons">
          {running ? (
            <>
              <button className="secondary" onClick={() => stop(api.interrupt)}>
                Interrupt
              </button>
              <button className="secondary" onClick={() => stop(api.skip)}>
                Skip
              </button>
              <button
                className="queue"
                onClick={onGenerate}
                title="Run this after the current job (Ctrl+Enter)"
              >
                Queue
              </button>
            </>
          ) : (
            <button className="primary generate" onClick={onGenerate}>
              Generate
            </button>
          )}
          {stopError && (
            <p className="error" role="alert">
              {stopError}
            </p>
          )}
        </div>
      </div>
      {/* Below the top row, full width: the Generate button keeps its size. */}
      {networksOpen && (
        <ExtraNetworks
          id={mode}
          onInsert={(text) => {
            const removed = removeFromPrompt(prompt, text);
            if (removed !== null) {
              cursor.current = null;
              form.set('prompt', removed);
              return;
            }
            const at = Math.min(cursor.current ?? prompt.length, prompt.length);
            const next = insertAt(prompt, at, text);
            cursor.current = next.cursor;
            form.set('prompt', next.text);
          }}
        />
      )}
    </>
  );
}
