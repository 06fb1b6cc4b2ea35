/**
 * A terminal progress bar with rate and ETA. Silent when the stream is not a TTY, so scripts
 * and CI logs stay clean (cli/progress.ts prints plain log lines there instead).
 */
export interface Progress {
  update(done: number, label?: string): void;
  finish(): void;
}

/**
 * Rate from the first two updates on, not from when the bar was made: a bar made after its first
 * unit of work (or after a slow start) would otherwise show an absurd rate.
 */
export class RateMeter {
  private first: { t: number; done: number } | null = null;

  /** Units per second so far, or null before the second reading. */
  update(done: number, now = performance.now()): number | null {
    if (!this.first || done < this.first.done) {
      this.first = { t: now, done };
      return null;
    }
    const dt = (now - this.first.t) / 1000;
    return done > this.first.done && dt > 0 ? (done - this.first.done) / dt : null;
  }
}

/** "2.50 it/s" or "4.20 s/it"; "? it/s" before the rate is known. */
export function formatRate(rate: number | null, unit: string): string {
  if (rate === null) return `? ${unit}/s`;
  return rate >= 1 ? `${rate.toFixed(2)} ${unit}/s` : `${(1 / rate).toFixed(2)} s/${unit}`;
}

export function progressBar(
  total: number,
  opts: { label?: string; unit?: string; stream?: NodeJS.WriteStream } = {},
): Progress {
  const stream = opts.stream ?? process.stderr;
  if (!stream.isTTY) return { update() {}, finish() {} };
  const unit = opts.unit ?? 'it';
  const meter = new RateMeter();
  let last = 0;
  let lastDone = -1;
  let label = opts.label ?? '';
  let rate: number | null = null;
  const draw = (done: number, rate: number | null): void => {
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 30;
    const filled = Math.round(frac * width);
    const eta = rate ? (total - done) / rate : NaN;
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${formatRate(rate, unit)} ETA ${formatSeconds(eta)}`;
    stream.write(`\r${line.slice(0, (stream.columns || 120) - 1)}\x1b[K`);
  };
  return {
    update(done, newLabel) {
      if (newLabel !== undefined) label = newLabel;
      if (done !== lastDone) rate = meter.update(done) ?? rate;
      lastDone = done;
      const now = performance.now();
      if (done > 0 && done < total && now - last < 100) return;
      last = now;
      draw(done, rate);
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
