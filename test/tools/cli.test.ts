/** The model-tool commands run as a user runs them: `node bin/sdstudio.js …` in a subprocess. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { goldenPath, repoRoot } from '../helpers/golden.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sdstudio(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'bin', 'sdstudio.js'), ...args],
      { cwd: repoRoot, env: { ...process.env, SDSTUDIO_CACHE: join(dir, 'cache') } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const tiny = goldenPath('tiny-sd', 'tiny-sd.safetensors');

describe('sdstudio model tools (subprocess)', () => {
  it('inspect --json prints one object with the documented keys and the file hash', async () => {
    const r = await sdstudio('inspect', tiny, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
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
    const sha = createHash('sha256').update(readFileSync(tiny)).digest('hex');
    expect(report.hash).toMatchObject({ sha256: sha, autov2: sha.slice(0, 10) });
    // The sidecar next to the checkpoint was found and read.
    expect((report.config as { sidecar?: { path: string } }).sidecar?.path).toBe(
      tiny.replace(/\.safetensors$/, '.yaml'),
    );
  });

  it('convert, extract, merge and hash write what they say', async () => {
    const fp16 = join(dir, 'fp16.safetensors');
    const vae = join(dir, 'vae.safetensors');
    const merged = join(dir, 'merged.safetensors');
    const c = await sdstudio('convert', tiny, fp16, '--fp16');
    expect(c.code).toBe(0);
    expect(c.stdout).toContain('wrote');
    const e = await sdstudio('extract', fp16, '--part', 'vae', vae);
    expect(e.code).toBe(0);
    const m = await sdstudio(
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
    expect(m.code).toBe(0);
    const s = await openSafetensors(merged);
    expect(JSON.parse(s.metadata.sd_merge_recipe!)).toMatchObject({
      interp_method: 'Weighted sum',
      multiplier: 0.5,
      bake_in_vae: 'vae.safetensors',
    });
    await s.close();
    const h = await sdstudio('hash', vae, '--json');
    expect(h.code).toBe(0);
    const line = JSON.parse(h.stdout) as { sha256: string; autov2: string };
    expect(line.sha256).toBe(createHash('sha256').update(readFileSync(vae)).digest('hex'));
  });

  it('bad input: one line on stderr, non-zero exit, no output file', async () => {
    const out = join(dir, 'never.safetensors');
    const cases = [
      ['inspect', join(dir, 'missing.safetensors')],
      ['convert', tiny, join(dir, 'never.ckpt')],
      ['convert', goldenPath('formats', 'malicious', 'os_system_p0.pkl'), out],
      ['merge', tiny, goldenPath('adapters', 'lora_kohya.safetensors'), '--alpha', '0.5', '--out', out],
      ['merge', tiny, '--alpha', 'half', '--out', out],
      ['extract', tiny, '--part', 'brain', out],
    ];
    const results = await Promise.all(cases.map((args) => sdstudio(...args)));
    for (const [i, args] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/internal error|at .*\.ts:\d+/);
    }
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.startsWith('never'))).toEqual([]);
  });
});
