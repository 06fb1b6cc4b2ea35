import { useEffect, useState } from 'react';
import { imageUrl, type ProgressResponse } from '../api.ts';
import { seedOf, type GenerationState } from '../generation.ts';

function formatEta(s: number): string {
  if (!Number.isFinite(s) || s <= 0) return '';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

export function ProgressBar({ progress }: { progress: ProgressResponse | null }) {
  const p = progress?.progress ?? 0;
  const st = progress?.state;
  const parts: string[] = [];
  if (st && st.job_count > 1) parts.push(`Image ${Math.min(st.job_no + 1, st.job_count)}/${st.job_count}`);
  if (st && st.sampling_steps > 0) parts.push(`Step ${st.sampling_step}/${st.sampling_steps}`);
  const eta = progress ? formatEta(progress.eta_relative) : '';
  if (eta) parts.push(`ETA ${eta}`);
  return (
    <div
      className="progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(p * 100)}
    >
      <div className="progress-fill" style={{ width: `${Math.round(p * 100)}%` }} />
      <span className="progress-text">{parts.join(' · ') || 'Waiting…'}</span>
    </div>
  );
}

export interface GalleryActions {
  /** Send image `index` (base64) with the request that made it, e.g. to img2img. */
  onSend?: (target: 'img2img' | 'inpaint', image: string, infotext: string) => void;
  onReuseSeed?: (seed: number) => void;
}

/** The running job's preview, or the last result: a large view, thumbnails, the infotext. */
export interface OutputProps {
  gen: GenerationState;
  actions: GalleryActions;
  onUnqueue: (id: number) => void;
  onShow: (id: number) => void;
}

export function Output({ gen, actions, onUnqueue, onShow }: OutputProps) {
  const [selected, setSelected] = useState(0);
  const result = gen.result;
  useEffect(() => setSelected(0), [result]);
  const images = result?.images ?? [];
  const index = Math.min(selected, Math.max(0, images.length - 1));
  const infotext = result?.info?.infotexts?.[index] ?? '';
  const seed = seedOf(result?.info ?? null, index);

  return (
    <section className="output" aria-label="Output">
      {gen.running && <ProgressBar progress={gen.progress} />}
      {gen.queue.length > 0 && (
        <ol className="queue-list" aria-label="Queued jobs">
          {gen.queue.map((j) => (
            <li key={j.id}>
              <span>
                {j.mode}: {String(j.request.prompt ?? '').slice(0, 60) || '(no prompt)'}
              </span>
              <button
                className="icon"
                aria-label={`Remove queued job ${j.id}`}
                onClick={() => onUnqueue(j.id)}
              >
                ✕
              </button>
            </li>
          ))}
        </ol>
      )}
      {gen.error && (
        <p className="error" role="alert">
          {gen.error}
        </p>
      )}
      <div className="viewer">
        {gen.running && gen.preview ? (
          <img className="preview" src={imageUrl(gen.preview)} alt="Live preview" />
        ) : images.length ? (
          <a href={imageUrl(images[index])} target="_blank" rel="noreferrer">
            <img className="result" src={imageUrl(images[index])} alt={`Result ${index + 1}`} />
          </a>
        ) : (
          <div className="placeholder">{gen.running ? 'Starting…' : 'Generated images appear here.'}</div>
        )}
      </div>
      {images.length > 1 && (
        <div className="thumbs" role="list">
          {images.map((img, i) => (
            <button
              key={i}
              role="listitem"
              className={i === index ? 'thumb selected' : 'thumb'}
              onClick={() => setSelected(i)}
              aria-label={`Show image ${i + 1}`}
            >
              <img src={imageUrl(img)} alt="" />
            </button>
          ))}
        </div>
      )}
      {images.length > 0 && (
        <>
          <div className="actions">
            <a className="button" href={imageUrl(images[index])} download={`sdstudio-${seed ?? index}.png`}>
              Download
            </a>
            {actions.onSend && (
              <>
                <button onClick={() => actions.onSend!('img2img', images[index], infotext)}>
                  Send to img2img
                </button>
                <button onClick={() => actions.onSend!('inpaint', images[index], infotext)}>
                  Send to inpaint
                </button>
              </>
            )}
            {actions.onReuseSeed && seed !== null && (
              <button onClick={() => actions.onReuseSeed!(seed)} title="Use this image's seed">
                ♻ Reuse seed {seed}
              </button>
            )}
          </div>
          <pre className="infotext" aria-label="Infotext">
            {infotext}
          </pre>
        </>
      )}
      {gen.history.length > 1 && (
        <div className="history" role="list" aria-label="Earlier jobs">
          {gen.history.map((r) => (
            <button
              key={r.id}
              role="listitem"
              className={r.id === result?.id ? 'thumb selected' : 'thumb'}
              title={String(r.request.prompt ?? '')}
              aria-label={`Show job ${r.id}`}
              onClick={() => onShow(r.id)}
            >
              {r.images[0] ? <img src={imageUrl(r.images[0])} alt="" /> : '∅'}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}
