import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { goldenPath, repoRoot } from '../helpers/golden.js';

const bench = join(repoRoot, 'bench', 'run.ts');

function runBench(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', bench, ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 110_000,
  });
}

describe('npm run bench', () => {
  it('prints exactly one JSON object with every key; measured figures are positive numbers', () => {
    // The tiny checkpoint and the cheap probes keep this fast; the 512² probes run the same code.
    const r = runBench([
      '--json',
      '--checkpoint',
      goldenPath('tiny-sd', 'tiny-sd.safetensors'),
      '--only',
      'gemm,create,unet256,text',
      '--runs',
      '1',
      '--warmup',
      '1',
      '--in-process',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    const keys = [
      'unet_s_per_step_512_b2',
      'unet_s_per_step_512_b1',
      'unet_s_per_step_256_b2',
      'vae_decode_s_512',
      'text_encode_ms',
      'session_create_s',
      'peak_rss_mb',
    ];
    for (const key of keys) expect(out, key).toHaveProperty(key);
    for (const key of [
      'unet_s_per_step_256_b2',
      'text_encode_ms',
      'session_create_s',
      'peak_rss_mb',
      // The machine's fp32 GEMM rate, measured first and again after the other probes.
      'gemm_fp32_gflops',
      'gemm_fp32_gflops_end',
    ]) {
      expect(typeof out[key], key).toBe('number');
      expect(out[key] as number, key).toBeGreaterThan(0);
    }
    // Not measured in this run: present, and null rather than a made-up number.
    expect(out.unet_s_per_step_512_b2).toBeNull();
    const machine = out.machine as { cores: number; cpu_model: string };
    expect(machine.cores).toBeGreaterThan(0);
    expect(machine.cpu_model.length).toBeGreaterThan(0);
    expect(out.onnxruntime).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('rejects an unknown probe with a usage line and exit code 2', () => {
    const r = runBench(['--only', 'unet9000']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown probe "unet9000"/);
    expect(r.stdout).toBe('');
  });
});
