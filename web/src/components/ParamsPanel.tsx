import { useState } from 'react';
import type { Mode } from '../fields.ts';
import type { ServerLists } from '../server-state.tsx';
import { DiceIcon } from './icons.tsx';
import { CheckField, NumberField, Section, SelectField, type Bound } from './fields.tsx';

export interface ParamsPanelProps {
  mode: Mode;
  form: Bound;
  lists: ServerLists | null;
  /** Seed of the last image shown (♻). */
  lastSeed: number | null;
}

/** Width × height presets: SD 1.x / 2.x squares, then SDXL's trained ratios (all multiples of 64). */
export const SIZE_PRESETS: readonly [number, number][] = [
  [512, 512],
  [768, 768],
  [1024, 1024],
  [512, 768],
  [768, 512],
  [832, 1216],
  [1216, 832],
  [896, 1152],
  [1152, 896],
  [768, 1344],
  [1344, 768],
  [640, 1536],
  [1536, 640],
];

/** Sampling, size, batch, seed, clip skip and (txt2img) hires fix: the controls both screens share. */
export function ParamsPanel({ mode, form, lists, lastSeed }: ParamsPanelProps) {
  const [extraSeed, setExtraSeed] = useState(false);
  const samplers = lists?.samplers.map((s) => s.name) ?? [];
  const schedulers = lists?.schedulers.map((s) => s.label) ?? [];
  return (
    <div className="params">
      <div className="row">
        <SelectField name="sampler_name" form={form} options={samplers} />
        <SelectField name="scheduler" form={form} options={schedulers} />
      </div>
      <NumberField name="steps" form={form} />
      <div className="row size-row">
        <div className="size-fields">
          <NumberField name="width" form={form} />
          <NumberField name="height" form={form} />
        </div>
        <button
          className="icon"
          title="Swap width and height"
          aria-label="Swap width and height"
          onClick={() => {
            const { width, height } = form.state;
            form.set('width', height);
            form.set('height', width);
          }}
        >
          ⇅
        </button>
        <select
          className="size-preset"
          aria-label="Size preset"
          value=""
          onChange={(e) => {
            const [w, h] = e.target.value.split('x').map(Number);
            if (!w || !h) return;
            form.set('width', w);
            form.set('height', h);
          }}
        >
          <option value="">Presets</option>
          {SIZE_PRESETS.map(([w, h]) => (
            <option key={`${w}x${h}`} value={`${w}x${h}`}>
              {w}×{h}
            </option>
          ))}
        </select>
        <div className="size-fields">
          <NumberField name="n_iter" form={form} />
          <NumberField name="batch_size" form={form} />
        </div>
      </div>
      <NumberField name="cfg_scale" form={form} />
      {mode === 'img2img' && <NumberField name="denoising_strength" form={form} />}
      <div className="row seed-row">
        <NumberField name="seed" form={form} slider={false} />
        <button
          className="icon"
          title="Random seed (-1)"
          aria-label="Random seed"
          onClick={() => form.set('seed', -1)}
        >
          <DiceIcon />
        </button>
        <button
          className="icon"
          title="Reuse the seed of the last image"
          aria-label="Reuse last seed"
          disabled={lastSeed === null}
          onClick={() => lastSeed !== null && form.set('seed', lastSeed)}
        >
          ♻
        </button>
        <label className="field check">
          <input type="checkbox" checked={extraSeed} onChange={(e) => setExtraSeed(e.target.checked)} />
          <span>Extra</span>
        </label>
      </div>
      {extraSeed && (
        <div className="extra-seed">
          <div className="row">
            <NumberField name="subseed" form={form} slider={false} />
            <button
              className="icon"
              aria-label="Random variation seed"
              onClick={() => form.set('subseed', -1)}
            >
              <DiceIcon />
            </button>
          </div>
          <NumberField name="subseed_strength" form={form} />
          <div className="row">
            <NumberField name="seed_resize_from_w" form={form} />
            <NumberField name="seed_resize_from_h" form={form} />
          </div>
        </div>
      )}
      <div className="row">
        <NumberField name="CLIP_stop_at_last_layers" form={form} />
        <CheckField name="tiling" form={form} />
      </div>
      {mode === 'txt2img' && (
        <Section title="Hires. fix" open={Boolean(form.state.enable_hr)}>
          <CheckField name="enable_hr" form={form} label="Enable hires. fix" />
          <div className="row">
            <SelectField name="hr_upscaler" form={form} options={lists?.hrUpscalers ?? []} />
            <NumberField name="hr_second_pass_steps" form={form} />
          </div>
          <NumberField name="denoising_strength" form={form} />
          <NumberField name="hr_scale" form={form} />
          <div className="row">
            <NumberField name="hr_resize_x" form={form} />
            <NumberField name="hr_resize_y" form={form} />
          </div>
          {Boolean(form.state.enable_hr) && <HiresTarget state={form.state} />}
        </Section>
      )}
    </div>
  );
}

/** "from 512x512 to 1024x1024", as A1111 shows it. */
function HiresTarget({ state }: { state: Record<string, unknown> }) {
  const w = Number(state.width);
  const h = Number(state.height);
  const rx = Number(state.hr_resize_x);
  const ry = Number(state.hr_resize_y);
  let tw: number;
  let th: number;
  if (rx === 0 && ry === 0) {
    tw = Math.floor(w * Number(state.hr_scale));
    th = Math.floor(h * Number(state.hr_scale));
  } else if (ry === 0) {
    tw = rx;
    th = Math.floor((rx * h) / w);
  } else if (rx === 0) {
    th = ry;
    tw = Math.floor((ry * w) / h);
  } else {
    tw = rx;
    th = ry;
  }
  return (
    <p className="hint">
      from {w}x{h} to {tw}x{th}
    </p>
  );
}
