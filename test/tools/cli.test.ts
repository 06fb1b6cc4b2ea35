/**
 * The model-tool commands as a user runs them. A few checks spawn `node bin/sdstudio.js …` (each
 * spawn costs about a second of CPU under tsx): the bin shim, exit codes and the one-line error of
 * a real process. The rest go through the same `main(argv)` the bin calls, in this process, with
 * stdout/stderr captured: same dispatch, flag parsing and error formatting, no process start.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { bytesOf, str } from '../formats/craft.js';
import { matchedLoraFile } from '../helpers/golden-cases.js';
import { goldenPath, repoRoot } from '../helpers/golden.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cacheDir = join(dir, 'cache');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A real subprocess: `node bin/sdstudio.js args…`. */
function spawnCli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'bin', 'sdstudio.js'), ...args],
      { cwd: repoRoot, env: { ...process.env, SDSTUDIO_CACHE: cacheDir } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * `main(argv)` in this process with stdout/stderr captured; an escaping error becomes what the
 * bin prints for it (exit 70, "internal error"). Calls must not overlap (the streams are global).
 */
async function runCli(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const { write: outWrite } = process.stdout;
  const { write: errWrite } = process.stderr;
  const env = process.env.SDSTUDIO_CACHE;
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof outWrite;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof errWrite;
  process.env.SDSTUDIO_CACHE = cacheDir;
  let code: number;
  try {
    code = await main(args);
  } catch (e) {
    err.push(`sdstudio: internal error: ${(e as Error).stack ?? String(e)}\n`);
    code = 70;
  } finally {
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
    if (env === undefined) delete process.env.SDSTUDIO_CACHE;
    else process.env.SDSTUDIO_CACHE = env;
  }
  return { code, stdout: out.join(''), stderr: err.join('') };
}

function expectOneLineError(r: Run, what: string): void {
  expect(r.code, what).not.toBe(0);
  expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
  expect(r.stderr, what).not.toMatch(/internal error|at .*\.ts:\d+/);
}

const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

/** A pickle that would run `os.system` under pickle.load (protocol 2: GLOBAL, TUPLE1, REDUCE). */
function maliciousPickle(): string {
  const p = join(dir, 'evil.pkl');
  writeFileSync(
    p,
    bytesOf(0x80, 2, 'cos\nsystem\n', str('touch /tmp/sdstudio-pwned-cli-test'), 0x85, 0x52, 0x2e),
  );
  return p;
}
const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('sdstudio model tools', () => {
  it('subprocess: inspect --json, convert, and a refused file exit as documented', async () => {
    const fp16 = join(dir, 'fp16.safetensors');
    const never = join(dir, 'never.safetensors');
    const [inspect, convert, refused] = await Promise.all([
      spawnCli('inspect', tiny, '--json'),
      spawnCli('convert', tiny, fp16, '--fp16'),
      spawnCli('convert', maliciousPickle(), never),
    ]);

    expect(inspect.code, inspect.stderr).toBe(0);
    const report = JSON.parse(inspect.stdout) as Record<string, unknown>;
    expect(Object.keys(report)).toEqual([
      'kind',
      'architecture',
      'prediction',
      'variant',
      'components',
      'dtypes',
      'tensors',
      'hash',
      'config',
      'metadata',
    ]);
    expect(report).toMatchObject({
      kind: 'checkpoint',
      architecture: 'sd1',
      prediction: 'eps',
      variant: 'normal',
    });
    const sha = sha256Of(tiny);
    expect(report.hash).toMatchObject({ sha256: sha, autov2: sha.slice(0, 10) });
    // The sidecar next to the checkpoint was found and read.
    expect((report.config as { sidecar?: { path: string } }).sidecar?.path).toBe(
      tiny.replace(/\.safetensors$/, '.yaml'),
    );

    expect(convert.code, convert.stderr).toBe(0);
    expect(convert.stdout).toContain('wrote');
    // Not a terminal: no progress bars (nor anything else) on stderr.
    expect(convert.stderr + inspect.stderr).toBe('');
    const s = await openSafetensors(fp16);
    expect(new Set(s.header.tensors.map((t) => t.dtype))).toEqual(new Set(['F16', 'I64']));
    await s.close();

    expectOneLineError(refused, 'convert malicious pickle');
    expect(refused.stderr).toMatch(/posix\.system|os\.system/);
    expect(existsSync(never)).toBe(false);
  });

  it('extract, merge and hash write what they say', async () => {
    const fp16 = join(dir, 'fp16-inproc.safetensors');
    const vae = join(dir, 'vae.safetensors');
    const merged = join(dir, 'merged.safetensors');
    const c = await runCli('convert', tiny, fp16, '--fp16');
    expect(c.code, c.stderr).toBe(0);
    const e = await runCli('extract', fp16, '--part', 'vae', vae);
    expect(e.code, e.stderr).toBe(0);
    const m = await runCli(
      'merge',
      tiny,
      fp16,
      '--mode',
      'weighted-sum',
      '--alpha',
      '0.5',
      '--out',
      merged,
      '--bake-vae',
      vae,
    );
    expect(m.code, m.stderr).toBe(0);
    const s = await openSafetensors(merged);
    expect(JSON.parse(s.metadata.sd_merge_recipe!)).toMatchObject({
      interp_method: 'Weighted sum',
      multiplier: 0.5,
      bake_in_vae: 'vae.safetensors',
    });
    await s.close();
    const h = await runCli('hash', vae, merged, '--json');
    expect(h.code, h.stderr).toBe(0);
    const lines = h.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { file: string; sha256: string });
    expect(lines.map((l) => [l.file, l.sha256])).toEqual([
      [vae, sha256Of(vae)],
      [merged, sha256Of(merged)],
    ]);
  });

  it('subprocess: Ctrl-C during convert removes the partial output', async () => {
    // 64 MiB of F32 in 1 MiB tensors: converting it to fp16 takes long enough to interrupt.
    const big = join(dir, 'big.safetensors');
    const infos = Array.from({ length: 64 }, (_, i) => ({
      name: `t${i}`,
      dtype: 'F32' as const,
      shape: [256, 1024],
    }));
    async function* tensors(): AsyncGenerator<[string, Tensor]> {
      for (const [i, info] of infos.entries()) {
        yield [info.name, { ...info, data: new Uint8Array(new Float32Array(256 * 1024).fill(i / 7).buffer) }];
      }
    }
    await writeSafetensors(big, tensors(), {}, { infos });
    const out = join(dir, 'interrupted.safetensors');
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'bin', 'sdstudio.js'), 'convert', big, out, '--fp16'],
      {
        cwd: repoRoot,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const tmp = `${out}.tmp-${child.pid}`;
    while (!existsSync(tmp)) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('interrupted');
    expect(existsSync(tmp)).toBe(false);
    expect(existsSync(out)).toBe(false);
  });

  it('bad input: one line on stderr, non-zero exit, no output file', async () => {
    const out = join(dir, 'never.safetensors');
    const folder = join(dir, 'a-folder.safetensors');
    mkdirSync(folder, { recursive: true });
    const cases = [
      ['convert', tiny, folder],
      ['inspect', join(dir, 'missing.safetensors')],
      ['convert', tiny, join(dir, 'never.ckpt')],
      ['convert', tiny, out, '--fp16', '--bf16'],
      ['convert', tiny, out, '--half'],
      ['merge', tiny, matchedLoraFile(), '--alpha', '0.5', '--out', out],
      ['merge', tiny, '--alpha', 'half', '--out', out],
      ['extract', tiny, '--part', 'brain', out],
      ['hash'],
      ['nosuchcommand'],
    ];
    for (const args of cases) expectOneLineError(await runCli(...args), args.join(' '));
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.startsWith('never'))).toEqual([]);
  });
});
