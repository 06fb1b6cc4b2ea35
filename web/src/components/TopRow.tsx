import { useState } from 'react';
import { api, type PromptStyle } from '../api.ts';
import type { Bound } from './fields.tsx';
import { PromptBox } from './PromptBox.tsx';

export interface TopRowProps {
  mode: 'txt2img' | 'img2img';
  form: Bound;
  running: boolean;
  onGenerate: () => void;
  styles: PromptStyle[];
}

/** Prompt, negative prompt, styles and Generate / Interrupt / Skip. */
export function TopRow({ mode, form, running, onGenerate, styles }: TopRowProps) {
  const [stopError, setStopError] = useState<string | null>(null);
  const stop = (call: () => Promise<unknown>) => {
    setStopError(null);
    call().catch((e: Error) => setStopError(e.message));
  };
  const selectedStyles = (form.state.styles as string[] | undefined) ?? [];
  return (
    <div className="toprow">
      <div className="prompts">
        <PromptBox
          id={`${mode}-prompt`}
          label="Prompt"
          value={String(form.state.prompt ?? '')}
          onChange={(v) => form.set('prompt', v)}
          onSubmit={onGenerate}
          placeholder="Prompt (Ctrl+Enter to generate, Ctrl+↑/↓ to change emphasis)"
        />
        <PromptBox
          id={`${mode}-negative`}
          label="Negative prompt"
          value={String(form.state.negative_prompt ?? '')}
          onChange={(v) => form.set('negative_prompt', v)}
          onSubmit={onGenerate}
          rows={2}
          placeholder="Negative prompt"
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
  );
}
