import { useState, type ReactNode } from 'react';
import { api, call } from '../api.ts';
import { followJob, jobsApi, type JobView } from '../jobs-api.ts';
import { useServer } from '../server-state.tsx';
import './library.css';

const METHODS = ['Weighted sum', 'Add difference', 'No interpolation'] as const;
type Method = (typeof METHODS)[number];
const FORMULA: Record<Method, string> = {
  'Weighted sum': 'A·(1−M) + B·M',
  'Add difference': 'A + (B − C)·M',
  'No interpolation': 'A',
};
const ACTIONS = [
  { id: 'inspect', label: 'Inspect' },
  { id: 'hash', label: 'Hash' },
  { id: 'convert', label: 'Convert' },
  { id: 'extract', label: 'Extract part' },
] as const;
type Action = (typeof ACTIONS)[number]['id'];

/**
 * The checkpoint merger (A1111's three modes, multiplier, bake VAE, fp16, discard regex, name) and
 * the model toolkit (inspect, hash, convert, extract a part). Each runs on the server as a queued
 * job (POST /api/v1/tools) whose progress is shown here; written models appear in the lists at once.
 */
export function Models() {
  const { lists, reload } = useServer();
  const [job, setJob] = useState<JobView | null>(null);
  const [error, setError] = useState<string | null>(null);
  const running = !!job && (job.state === 'queued' || job.state === 'running');

  async function submit(body: Record<string, unknown>) {
    setError(null);
    setJob(null);
    try {
      const queued = await jobsApi.tool(body);
      setJob(queued);
      const done = await followJob(queued.id, (j) =>
        // Keep the last progress on show once the job has ended.
        setJob((prev) => ({ ...j, progress: j.progress ?? prev?.progress ?? null })),
      );
      if (done.state === 'succeeded' && done.tool?.result?.folder) await reload();
    } catch (e) {
      setError((e as Error).message);
    }
  }

  /** Files copied into the model folders by hand: A1111's refresh routes, then the lists. */
  async function rescan() {
    setError(null);
    try {
      await api.refreshCheckpoints();
      await call<null>('POST', '/sdapi/v1/refresh-vae');
      await reload();
    } catch (e) {
      setError((e as Error).message);
    }
  }

  const checkpoints = lists?.models.map((m) => m.title) ?? [];
  const vaes = lists?.vaes.map((v) => v.model_name) ?? [];
  return (
    <div className="screen library">
      <div className="columns">
        <div className="lib-forms">
          <Merger checkpoints={checkpoints} vaes={vaes} busy={running} onRun={submit} />
          <Toolkit checkpoints={checkpoints} vaes={vaes} busy={running} onRun={submit} />
          <div>
            <button onClick={() => void rescan()} title="Look for files added to the model folders">
              Rescan model folders
            </button>
          </div>
        </div>
        <section className="output" aria-label="Tool job">
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          {job ? (
            <JobPanel job={job} onCancel={() => void jobsApi.cancel(job.id)} />
          ) : (
            !error && <p className="placeholder">Merges and tool results appear here.</p>
          )}
        </section>
      </div>
    </div>
  );
}

function Select({
  id,
  label,
  value,
  onChange,
  children,
  disabled = false,
}: {
  id: string;
  label: string;
  value: string;
  onChange: (v: string) => void;
  children: ReactNode;
  disabled?: boolean;
}) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange(e.target.value)}>
        {children}
      </select>
    </div>
  );
}

const options = (values: string[], empty?: string) => (
  <>
    {empty !== undefined && <option value="">{empty}</option>}
    {values.map((v) => (
      <option key={v} value={v}>
        {v}
      </option>
    ))}
  </>
);

interface FormProps {
  checkpoints: string[];
  vaes: string[];
  busy: boolean;
  onRun: (body: Record<string, unknown>) => Promise<void>;
}

function Merger({ checkpoints, vaes, busy, onRun }: FormProps) {
  const [a, setA] = useState('');
  const [b, setB] = useState('');
  const [c, setC] = useState('');
  const [method, setMethod] = useState<Method>('Weighted sum');
  const [m, setM] = useState(0.3);
  const [half, setHalf] = useState(false);
  const [vae, setVae] = useState('None');
  const [discard, setDiscard] = useState('');
  const [name, setName] = useState('');
  const needB = method !== 'No interpolation';
  const needC = method === 'Add difference';
  return (
    <form
      className="params lib-form"
      aria-label="Checkpoint merger"
      onSubmit={(e) => {
        e.preventDefault();
        void onRun({
          tool: 'merge',
          primary_model_name: a,
          ...(needB && { secondary_model_name: b }),
          ...(needC && { tertiary_model_name: c }),
          interp_method: method,
          multiplier: m,
          save_as_half: half,
          bake_in_vae: vae,
          discard_weights: discard,
          custom_name: name,
        });
      }}
    >
      <h2>Checkpoint merger</h2>
      <div className="row">
        <Select id="merge-a" label="Primary model (A)" value={a} onChange={setA}>
          {options(checkpoints, '—')}
        </Select>
        <Select id="merge-b" label="Secondary model (B)" value={b} onChange={setB} disabled={!needB}>
          {options(checkpoints, '—')}
        </Select>
        <Select id="merge-c" label="Tertiary model (C)" value={c} onChange={setC} disabled={!needC}>
          {options(checkpoints, '—')}
        </Select>
      </div>
      <fieldset className="field radio">
        <legend>Interpolation method: {FORMULA[method]}</legend>
        {METHODS.map((x) => (
          <label key={x}>
            <input type="radio" name="merge-method" checked={method === x} onChange={() => setMethod(x)} />{' '}
            {x}
          </label>
        ))}
      </fieldset>
      <div className="field">
        <label htmlFor="merge-m">Multiplier (M)</label>
        <div className="number-row">
          <input
            type="range"
            min={0}
            max={1}
            step={0.05}
            value={m}
            disabled={!needB}
            aria-label="Multiplier slider"
            onChange={(e) => setM(Number(e.target.value))}
          />
          <input
            id="merge-m"
            type="number"
            step={0.05}
            value={m}
            disabled={!needB}
            onChange={(e) => setM(Number(e.target.value))}
          />
        </div>
      </div>
      <div className="row">
        <Select id="merge-vae" label="Bake in VAE" value={vae} onChange={setVae}>
          {options(['None', ...vaes])}
        </Select>
        <label className="field check">
          <input type="checkbox" checked={half} onChange={(e) => setHalf(e.target.checked)} /> Save as float16
        </label>
      </div>
      <div className="field">
        <label htmlFor="merge-discard">Discard weights with matching name (regex)</label>
        <input
          id="merge-discard"
          value={discard}
          placeholder="e.g. ^model_ema\."
          onChange={(e) => setDiscard(e.target.value)}
        />
      </div>
      <div className="field">
        <label htmlFor="merge-name">Custom name (optional)</label>
        <input id="merge-name" value={name} placeholder="merged" onChange={(e) => setName(e.target.value)} />
      </div>
      <p className="hint">
        Saved as .safetensors in the checkpoint folder; an existing file is never replaced.
      </p>
      <button className="primary" type="submit" disabled={busy}>
        Merge
      </button>
    </form>
  );
}

function Toolkit({ checkpoints, vaes, busy, onRun }: FormProps) {
  const [model, setModel] = useState('');
  const [action, setAction] = useState<Action>('inspect');
  const [dtype, setDtype] = useState('fp16');
  const [prune, setPrune] = useState(true);
  const [noVae, setNoVae] = useState(false);
  const [part, setPart] = useState('vae');
  const [name, setName] = useState('');
  const writes = action === 'convert' || action === 'extract';
  return (
    <form
      className="params lib-form"
      aria-label="Model toolkit"
      onSubmit={(e) => {
        e.preventDefault();
        void onRun({
          tool: action,
          model,
          ...(action === 'convert' && { dtype, prune, no_vae: noVae }),
          ...(action === 'extract' && { part }),
          ...(writes && name.trim() && { custom_name: name }),
        });
      }}
    >
      <h2>Model toolkit</h2>
      <div className="field">
        <label htmlFor="tool-model">Model</label>
        <select id="tool-model" value={model} onChange={(e) => setModel(e.target.value)}>
          <option value="">—</option>
          <optgroup label="Checkpoints">{options(checkpoints)}</optgroup>
          {vaes.length > 0 && <optgroup label="VAEs">{options(vaes)}</optgroup>}
        </select>
      </div>
      <fieldset className="field radio">
        <legend>Action</legend>
        {ACTIONS.map((x) => (
          <label key={x.id}>
            <input
              type="radio"
              name="tool-action"
              checked={action === x.id}
              onChange={() => setAction(x.id)}
            />{' '}
            {x.label}
          </label>
        ))}
      </fieldset>
      {action === 'convert' && (
        <div className="row">
          <Select id="tool-dtype" label="Precision" value={dtype} onChange={setDtype}>
            <option value="keep">keep</option>
            <option value="fp16">fp16</option>
            <option value="bf16">bf16</option>
            <option value="fp32">fp32</option>
          </Select>
          <label className="field check">
            <input type="checkbox" checked={prune} onChange={(e) => setPrune(e.target.checked)} /> Prune EMA
            and training state
          </label>
          <label className="field check">
            <input type="checkbox" checked={noVae} onChange={(e) => setNoVae(e.target.checked)} /> Drop the
            VAE
          </label>
        </div>
      )}
      {action === 'extract' && (
        <Select id="tool-part" label="Part" value={part} onChange={setPart}>
          <option value="vae">VAE (into the VAE folder)</option>
          <option value="unet">UNet</option>
          <option value="text-encoder">Text encoder</option>
          <option value="text-encoder-2">Text encoder 2 (SDXL)</option>
        </Select>
      )}
      {writes && (
        <div className="field">
          <label htmlFor="tool-name">Output name (optional)</label>
          <input id="tool-name" value={name} onChange={(e) => setName(e.target.value)} />
        </div>
      )}
      <button className="primary" type="submit" disabled={busy}>
        {ACTIONS.find((x) => x.id === action)!.label}
      </button>
    </form>
  );
}

function JobPanel({ job, onCancel }: { job: JobView; onCancel: () => void }) {
  const p = job.progress;
  const pct = job.state === 'succeeded' ? 100 : Math.round((p?.fraction ?? 0) * 100);
  const result = job.tool?.result ?? null;
  const running = job.state === 'queued' || job.state === 'running';
  return (
    <div className="lib-job">
      <div className="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct}>
        <div className="progress-fill" style={{ width: `${pct}%` }} />
        <span className="progress-text">
          {job.tool?.tool}: {job.state}
          {p && p.steps > 0 ? ` · ${p.phase} ${p.step}/${p.steps}` : ''}
        </span>
      </div>
      {running && <button onClick={onCancel}>Cancel</button>}
      {job.state !== 'succeeded' && job.error && (
        <p className="error" role="alert">
          {job.error}
        </p>
      )}
      {result && <ToolResult tool={job.tool!.tool} result={result} />}
    </div>
  );
}

function ToolResult({ tool, result }: { tool: string; result: Record<string, unknown> }) {
  if (tool === 'inspect') {
    const r = (result.report ?? {}) as Record<string, unknown>;
    const rows = ['kind', 'architecture', 'prediction', 'variant', 'tensors'].filter((k) => r[k] != null);
    return (
      <div aria-label="Inspect report">
        <table className="items">
          <tbody>
            <tr>
              <th>file</th>
              <td>{String(result.file)}</td>
            </tr>
            {rows.map((k) => (
              <tr key={k}>
                <th>{k}</th>
                <td>{String(r[k])}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <pre className="infotext">{JSON.stringify(r, null, 2)}</pre>
      </div>
    );
  }
  if (tool === 'hash') {
    return (
      <table className="items" aria-label="Hashes">
        <tbody>
          {['file', 'sha256', 'autov2', 'legacy', 'addnet'].map(
            (k) =>
              result[k] != null && (
                <tr key={k}>
                  <th>{k}</th>
                  <td>
                    <code>{String(result[k])}</code>
                  </td>
                </tr>
              ),
          )}
        </tbody>
      </table>
    );
  }
  return (
    <p className="ok" role="status">
      Wrote {String(result.file)} ({String(result.tensors)} tensors) into {String(result.folder)}
      {result.checkpoint ? '; it is in the checkpoint list now.' : '.'}
    </p>
  );
}
