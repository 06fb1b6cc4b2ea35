/**
 * `sdstudio txt2img` / `img2img` as a process under the things that end or disturb a job: SIGTERM
 * and SIGHUP mid-job (what is finished stays), `kill -9` of the launcher (its re-executed child
 * ends too), an output folder that cannot be written (an error before any work), a wrong --model
 * path; and what a user sees: img2img at the init image's size, plain progress lines in logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readGenerationInfo } from '../../src/infotext/image-metadata.js';
import { clipVocabPath, repoRoot } from '../helpers/golden.js';
import { imageSize, runCli, tiny } from './cli-helpers.js';

const bin = join(repoRoot, 'bin', 'sdstudio.js');
const long = ['x', '--model', tiny, '--width', '64', '--height', '64', '--steps', '3', '--no-grid'];

interface Running {
  proc: ChildProcess;
  lines: string[];
  stderr: () => string;
  /** Resolves when `n` paths have been printed. */
  paths(n: number): Promise<string[]>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], cwd: string, env: Record<string, string> = {}): Running {
  const proc = spawn(process.execPath, [bin, ...args], {
    cwd,
    env: { ...process.env, SDSTUDIO_CLIP_VOCAB: clipVocabPath(), SDSTUDIO_PROGRESS_LOG: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let out = '';
  let err = '';
  const waiters: { n: number; resolve: (l: string[]) => void }[] = [];
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts.filter(Boolean));
    for (const w of waiters.splice(0)) {
      if (lines.length >= w.n) w.resolve(lines.slice());
      else waiters.push(w);
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    lines,
    stderr: () => err,
    paths: (n) =>
      new Promise((resolve, reject) => {
        if (lines.length >= n) return resolve(lines.slice());
        waiters.push({ n, resolve });
        void exit.then(() => reject(new Error(`exited after ${lines.length} path(s): ${err}`)));
      }),
    exit,
  };
}

/** Whether `pid` runs (a zombie waiting for its reaper has ended). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

describe('sdstudio txt2img as a process', () => {
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`${signal} mid-job stops after the step; every image already printed is on disk with its infotext`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sdsig-'));
      const run = start(['txt2img', ...long, '--batch-count', '200', '--seed', '5'], dir);
      await run.paths(2);
      run.proc.kill(signal);
      const { code } = await run.exit;
      expect(code, run.stderr()).toBe(signal === 'SIGTERM' ? 143 : 129);
      expect(run.stderr()).toContain(`${signal}: stopping after the current step`);
      expect(run.lines.length).toBeGreaterThanOrEqual(2);
      expect(run.lines.length).toBeLessThan(200);
      for (const [i, path] of run.lines.entries()) {
        expect(path).toMatch(new RegExp(`${String(i).padStart(5, '0')}-${5 + i}\\.png$`));
        const { geninfo } = await readGenerationInfo(path);
        expect(geninfo).toContain(`Seed: ${5 + i},`);
      }
    });
  }

  it.runIf(process.platform === 'linux')(
    'kill -9 of the launcher ends the re-executed child (no images written afterwards)',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sdkill-'));
      const env = { SDSTUDIO_HUGEPAGES: '1', SDSTUDIO_REEXEC: '', GLIBC_TUNABLES: '' };
      const run = start(['txt2img', ...long, '--batch-count', '500'], dir, env);
      await run.paths(1);
      const parent = run.proc.pid!;
      const children = readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim().split(/\s+/);
      expect(children).toHaveLength(1);
      const child = Number(children[0]);
      expect(readFileSync(`/proc/${child}/environ`, 'utf8')).toContain('SDSTUDIO_REEXEC=1');
      expect(alive(child)).toBe(true);
      run.proc.kill('SIGKILL');
      expect(await until(() => !alive(child), 20_000)).toBe(true);
      const count = run.lines.length;
      await new Promise((r) => setTimeout(r, 1500));
      expect(run.lines.length).toBe(count);
    },
  );

  it('an output folder that cannot be written: one line naming it, exit 73, before the model is looked up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdout-'));
    // Under a regular file: fails for root as well (unlike a chmod'ed folder).
    await writeFile(join(dir, 'file'), 'x');
    const out = join(dir, 'file', 'outputs');
    const [real, noModel] = await Promise.all([
      runCli(['txt2img', ...long, '--out', out], dir),
      runCli(['txt2img', 'x', '--model', join(dir, 'missing.safetensors'), '--out', out], dir),
    ]);
    for (const r of [real, noModel]) {
      expect(r.code, r.stderr).toBe(73);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(out);
      expect(r.stdout).toBe('');
    }
  });

  it('a wrong --model path says the file does not exist, not "pass --model PATH"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdmodel-'));
    const r = await runCli(['txt2img', 'x', '--model', '/path/to/v1-5-pruned-emaonly.safetensors'], dir);
    expect(r.code).toBe(4);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('/path/to/v1-5-pruned-emaonly.safetensors does not exist');
    expect(r.stderr).not.toContain('--model');
  });

  it('img2img without --width/--height keeps the init image size rounded to 8; one side given keeps its aspect', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdi2i-'));
    const init = join(dir, 'init.png');
    await sharp({ create: { width: 100, height: 60, channels: 3, background: { r: 200, g: 40, b: 40 } } })
      .png()
      .toFile(init);
    const common = ['--prompt', 'x', '--model', tiny, '--steps', '2', '--seed', '1'];
    const [own, oneSide] = await Promise.all([
      runCli(['img2img', init, ...common], dir),
      runCli(['img2img', init, ...common, '--width', '48'], dir),
    ]);
    expect(own.code, own.stderr).toBe(0);
    expect(oneSide.code, oneSide.stderr).toBe(0);
    expect(await imageSize(own.stdout.trim())).toEqual([104, 64]);
    expect(await imageSize(oneSide.stdout.trim())).toEqual([48, 32]);
  });

  it('stderr not a terminal: plain progress lines naming the phase (hires: first pass, hires fix; VAE decode)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdlog-'));
    const env = { SDSTUDIO_PROGRESS_LOG: '0.001' };
    const [plain, hires] = await Promise.all([
      runCli(['txt2img', ...long], dir, env),
      runCli(['txt2img', ...long, '--hires', '--hires-steps', '2'], dir, env),
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(hires.code, hires.stderr).toBe(0);
    expect(plain.stderr).toMatch(/^txt2img 1\/1: [1-3]\/3 /m);
    expect(plain.stderr).toMatch(/^VAE decode 1\/1: 1\/1 .*1\/1 image\(s\) done$/m);
    expect(plain.stderr).not.toContain('first pass');
    expect(hires.stderr).toMatch(/^first pass 1\/2: [1-3]\/3 /m);
    expect(hires.stderr).toMatch(/^hires fix 2\/2: [1-2]\/2 /m);
    expect(hires.stderr).toMatch(/^VAE decode 2\/2: /m);
    expect(existsSync(plain.stdout.trim())).toBe(true);
  });
});
