/**
 * The (done, total) callbacks the tools report through, as terminal bars: the bar is made on the
 * first report (when the total is known) and finished on the last.
 */
import { progressBar, type Progress } from '../util/progress.js';

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
