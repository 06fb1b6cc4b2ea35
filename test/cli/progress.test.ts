/**
 * What the generation progress shows: rates measured from the first report of a pass (never from
 * when a bar was made, which gave absurd it/s at the start of later jobs), a bar per phase at a
 * terminal, and plain lines at most every N seconds elsewhere.
 */
import { describe, expect, it } from 'vitest';
import { jobProgress, type JobProgressView } from '../../src/cli/progress.js';
import { formatRate, RateMeter } from '../../src/util/progress.js';

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = {
    isTTY,
    columns: 300,
    write(s: string) {
      text += s;
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, text: () => text };
}

const view = (phase: string, job: number, step: number, steps = 4): JobProgressView => ({
  phase,
  job,
  jobCount: 2,
  step,
  steps,
  imagesDone: job,
  imagesTotal: 2,
});

describe('RateMeter', () => {
  it('has no rate before a second reading, then counts from the first one', () => {
    const m = new RateMeter();
    expect(m.update(3, 1000)).toBeNull();
    expect(m.update(5, 3000)).toBe(1);
    expect(m.update(9, 5000)).toBe(1.5);
    // A new pass (fewer done) starts over.
    expect(m.update(0, 9000)).toBeNull();
    expect(m.update(2, 9500)).toBe(4);
    expect(formatRate(null, 'it')).toBe('? it/s');
    expect(formatRate(0.25, 'it')).toBe('4.00 s/it');
    expect(formatRate(4, 'it')).toBe('4.00 it/s');
  });
});

describe('jobProgress', () => {
  it('terminal: a bar per phase and job with its label; a later job starts with no rate, not a huge one', () => {
    const { stream, text } = fakeStream(true);
    const p = jobProgress({ stream });
    p.update(view('txt2img', 0, 0));
    p.update(view('txt2img', 0, 4));
    p.update(view('vae decode', 0, 0, 1));
    p.update(view('vae decode', 0, 1, 1));
    p.update(view('txt2img', 1, 0));
    p.finish();
    const draws = text()
      .split(/[\r\n]/)
      .filter(Boolean);
    expect(draws.some((l) => l.startsWith('txt2img 1/2 ['))).toBe(true);
    expect(draws.some((l) => l.startsWith('VAE decode 1/2 ['))).toBe(true);
    const second = draws.filter((l) => l.startsWith('txt2img 2/2'));
    expect(second).toHaveLength(1);
    expect(second[0]).toContain('0/4 ? it/s');
  });

  it('not a terminal: nothing before the interval, then one plain line per interval', async () => {
    const quiet = fakeStream(false);
    const q = jobProgress({ stream: quiet.stream, logEverySec: 60 });
    q.update(view('img2img', 0, 1));
    q.update(view('img2img', 0, 2));
    expect(quiet.text()).toBe('');
    const off = fakeStream(false);
    jobProgress({ stream: off.stream, logEverySec: 0 }).update(view('img2img', 0, 1));
    expect(off.text()).toBe('');

    const log = fakeStream(false);
    const l = jobProgress({ stream: log.stream, logEverySec: 0.02 });
    await new Promise((r) => setTimeout(r, 30));
    l.update(view('img2img', 0, 1));
    l.update(view('img2img', 0, 2));
    expect(log.text()).toBe('img2img 1/2: 1/4 ? it/s, 0/2 image(s) done\n');
    await new Promise((r) => setTimeout(r, 30));
    l.update(view('img2img', 0, 3));
    expect(log.text().split('\n')[1]).toMatch(
      /^img2img 1\/2: 3\/4 \d+\.\d\d (it\/s|s\/it), 0\/2 image\(s\) done$/,
    );
  });
});
