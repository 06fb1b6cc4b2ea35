/**
 * The (done, total) callbacks the tools report through, as terminal bars: the bar is made on the
 * first report (when the total is known) and finished on the last.
 */
import { formatRate, progressBar, RateMeter, type Progress } from '../util/progress.js';

export type OnProgress = (done: number, total: number) => void;

/** Counts of items (tensors, steps). */
export function countProgress(label: string, unit: string): OnProgress {
  let bar: Progress | undefined;
  return (done, total) => {
    bar ??= progressBar(total, { label, unit });
    bar.update(done);
    if (done >= total) bar.finish();
  };
}

/** Byte counts, drawn in MB (hashing a multi-GB file). */
export function byteProgress(label: string): OnProgress {
  const MB = 2 ** 20;
  let bar: Progress | undefined;
  return (done, total) => {
    bar ??= progressBar(Math.ceil(total / MB), { label, unit: 'MB' });
    bar.update(Math.floor(done / MB));
    if (done >= total) bar.finish();
  };
}

/** A generation job's progress as the CLI shows it. */
export interface JobProgressView {
  phase: string;
  job: number;
  jobCount: number;
  step: number;
  steps: number;
  imagesDone: number;
  imagesTotal: number;
}

function jobLabel(p: JobProgressView): string {
  if (p.phase === 'vae decode') return `VAE decode ${p.job + 1}/${p.jobCount}`;
  return `${p.phase} ${p.job + 1}/${p.jobCount}`;
}

/**
 * Progress of a generation job: at a terminal a bar per sampling pass and per VAE decode, labelled
 * with its phase ("txt2img 1/2", "first pass"/"hires fix" with the hires fix, "img2img",
 * "VAE decode"); elsewhere (a log file, a service's journal) one plain line every `logEverySec`
 * seconds (0: none), the first only after that long, so quick jobs print nothing.
 */
export function jobProgress(opts: { stream?: NodeJS.WriteStream; logEverySec?: number } = {}): {
  update(p: JobProgressView): void;
  finish(): void;
} {
  const stream = opts.stream ?? process.stderr;
  let bar: Progress | undefined;
  let key = '';
  let meter = new RateMeter();
  let rate: number | null = null;
  if (stream.isTTY) {
    return {
      update(p) {
        const k = `${p.job}|${p.phase}`;
        if (k !== key) {
          bar?.finish();
          key = k;
          const unit = p.phase === 'vae decode' ? 'img' : 'it';
          bar = progressBar(p.steps, { label: jobLabel(p), unit, stream });
        }
        bar!.update(p.step);
      },
      finish() {
        bar?.finish();
        bar = undefined;
        key = '';
      },
    };
  }
  const every = (opts.logEverySec ?? 5) * 1000;
  let last = performance.now();
  return {
    update(p) {
      const k = `${p.job}|${p.phase}`;
      if (k !== key) {
        key = k;
        meter = new RateMeter();
        rate = null;
      }
      rate = meter.update(p.step) ?? rate;
      const now = performance.now();
      if (every <= 0 || now - last < every) return;
      last = now;
      const unit = p.phase === 'vae decode' ? 'img' : 'it';
      stream.write(
        `${jobLabel(p)}: ${p.step}/${p.steps} ${formatRate(rate, unit)}, ` +
          `${p.imagesDone}/${p.imagesTotal} image(s) done\n`,
      );
    },
    finish() {},
  };
}
