/**
 * A terminal progress bar with rate and ETA. Silent when the stream is not a TTY, so scripts
 * and CI logs stay clean.
 */
export interface Progress {
  update(done: number, label?: string): void;
  finish(): void;
}

export function progressBar(
  total: number,
  opts: { label?: string; unit?: string; stream?: NodeJS.WriteStream } = {},
): Progress {
  const stream = opts.stream ?? process.stderr;
  if (!stream.isTTY) return { update() {}, finish() {} };
  const start = performance.now();
  const unit = opts.unit ?? 'it';
  let last = 0;
  let label = opts.label ?? '';
  const draw = (done: number): void => {
    const elapsed = (performance.now() - start) / 1000;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 30;
    const filled = Math.round(frac * width);
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const rateText =
      rate >= 1 || rate === 0 ? `${rate.toFixed(2)} ${unit}/s` : `${(1 / rate).toFixed(2)} s/${unit}`;
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${rateText} ETA ${formatSeconds(eta)}`;
    stream.write(`\r${line.slice(0, (stream.columns || 120) - 1)}\x1b[K`);
  };
  return {
    update(done, newLabel) {
      if (newLabel !== undefined) label = newLabel;
      const now = performance.now();
      if (done < total && now - last < 100) return;
      last = now;
      draw(done);
    },
    finish() {
      stream.write('\n');
    },
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
