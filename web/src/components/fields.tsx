/**
 * Form controls bound to the field table: each takes the request field's name and reads its label,
 * bounds, step and choices from fields.ts.
 */
import { useEffect, useState, type ReactNode } from 'react';
import { field } from '../fields.ts';
import { normalise, type FormState } from '../request.ts';

export interface Bound {
  /** Which form (element ids are unique per form: both screens stay in the page). */
  id: string;
  state: FormState;
  set: (key: string, value: unknown) => void;
}

/** Slider + number box, as A1111's; the box accepts free typing and snaps to the field on blur. */
export function NumberField({ name, form, slider = true }: { name: string; form: Bound; slider?: boolean }) {
  const f = field(name);
  const value = form.state[name] as number;
  const [text, setText] = useState(String(value));
  useEffect(() => setText(String(value)), [value]);
  const id = `${form.id}-${name}`;
  const commit = (raw: string) => {
    const v = normalise(f, raw) as number;
    setText(String(v));
    if (v !== value) form.set(name, v);
  };
  return (
    <div className="field number">
      <label htmlFor={id}>{f.label}</label>
      <div className="number-row">
        {slider && f.slider && (
          <input
            type="range"
            aria-label={`${f.label} slider`}
            min={f.slider[0]}
            max={f.slider[1]}
            step={f.step ?? 1}
            value={Number.isFinite(value) ? value : 0}
            onChange={(e) => form.set(name, normalise(f, e.target.value))}
          />
        )}
        <input
          id={id}
          name={name}
          type="number"
          inputMode="decimal"
          min={f.min}
          max={f.max}
          step={f.step ?? 'any'}
          value={text}
          onChange={(e) => setText(e.target.value)}
          onBlur={(e) => commit(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') commit(e.currentTarget.value);
          }}
        />
      </div>
    </div>
  );
}

export function CheckField({ name, form, label }: { name: string; form: Bound; label?: string }) {
  const f = field(name);
  return (
    <label className="field check">
      <input
        type="checkbox"
        name={name}
        checked={Boolean(form.state[name])}
        onChange={(e) => form.set(name, e.target.checked)}
      />
      <span>{label ?? f.label}</span>
    </label>
  );
}

/** A choice field: its own choices from the table, or `options` from the server (values = labels). */
export function SelectField({ name, form, options }: { name: string; form: Bound; options?: string[] }) {
  const f = field(name);
  const choices = options ? options.map((o) => ({ value: o as unknown, label: o })) : (f.choices ?? []);
  const current = form.state[name];
  const index = choices.findIndex((c) => c.value === current);
  const id = `${form.id}-${name}`;
  return (
    <div className="field select">
      <label htmlFor={id}>{f.label}</label>
      <select
        id={id}
        name={name}
        value={index < 0 ? '' : String(index)}
        onChange={(e) => form.set(name, choices[Number(e.target.value)].value)}
      >
        {index < 0 && <option value="">{current === undefined ? '' : String(current)}</option>}
        {choices.map((c, i) => (
          <option key={i} value={String(i)}>
            {c.label}
          </option>
        ))}
      </select>
    </div>
  );
}

export function Radio({ name, form }: { name: string; form: Bound }) {
  const f = field(name);
  return (
    <fieldset className="field radio">
      <legend>{f.label}</legend>
      {(f.choices ?? []).map((c, i) => (
        <label key={i}>
          <input
            type="radio"
            name={name}
            checked={form.state[name] === c.value}
            onChange={() => form.set(name, c.value)}
          />
          {c.label}
        </label>
      ))}
    </fieldset>
  );
}

export function Section({ title, children, open }: { title: string; children: ReactNode; open?: boolean }) {
  return (
    <details className="section" open={open}>
      <summary>{title}</summary>
      <div className="section-body">{children}</div>
    </details>
  );
}
