/**
 * The "no checkpoint" screen's download form: `sdstudio download` through the server
 * (POST /api/v1/downloads), its progress polled until the file is in place, then the lists reload.
 * An empty source downloads the server's default (A1111's SD 1.5).
 */
import { useEffect, useState } from 'react';
import { api, type DownloadState } from '../api.ts';

const POLL_MS = 500;

function sizeText(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

export function ModelDownload({ onDone }: { onDone: () => Promise<void> | void }) {
  const [source, setSource] = useState('');
  const [download, setDownload] = useState<DownloadState | null>(null);
  const [error, setError] = useState<string | null>(null);
  const running = download?.state === 'running';

  useEffect(() => {
    if (!download || download.state !== 'running') return;
    const t = setTimeout(async () => {
      try {
        const d = await api.download(download.id);
        setDownload(d);
        if (d.state === 'succeeded') await onDone();
        if (d.state === 'failed') setError(d.error ?? 'the download failed');
      } catch (e) {
        setError((e as Error).message);
        setDownload(null);
      }
    }, POLL_MS);
    return () => clearTimeout(t);
  }, [download, onDone]);

  const start = async () => {
    setError(null);
    try {
      setDownload(await api.startDownload(source.trim()));
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const pct = download && download.total > 0 ? Math.min(100, (100 * download.bytes) / download.total) : 0;
  return (
    <form
      className="model-download"
      onSubmit={(e) => {
        e.preventDefault();
        if (!running) void start();
      }}
    >
      <label htmlFor="download-source">Download a checkpoint</label>
      <input
        id="download-source"
        type="text"
        value={source}
        disabled={running}
        placeholder="URL or Hugging Face owner/repo/file.safetensors (empty: SD 1.5)"
        onChange={(e) => setSource(e.target.value)}
      />
      <button type="submit" disabled={running}>
        Download
      </button>
      {running && (
        <span role="status" aria-label="Download progress">
          <progress max={100} value={pct} /> {download.name}: {sizeText(download.bytes)}
          {download.total > 0 && ` of ${sizeText(download.total)}`}
        </span>
      )}
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}
