import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clipVocabPath, goldenPath, repoRoot } from '../helpers/golden.js';

const bench = join(repoRoot, 'bench', 'run.ts');

function runBench(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', bench, ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 110_000,
  });
}

/** The load probe's keys (bench/load.ts): the server under concurrent txt2img requests. */
const LOAD_KEYS = [
  'load_requests',
  'load_clients',
  'load_answered',
  'load_lost',
  'load_requests_per_s',
  'load_generation_ms_mean',
  'load_overhead_ms_per_request',
  'load_http_overhead_ms_p50',
  'load_latency_ms_p50',
  'load_rss_mb_after_first_20',
  'load_rss_mb_end',
  'load_rss_growth_pct',
];

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
      ...LOAD_KEYS,
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
    expect(out.load_requests_per_s).toBeNull();
    const machine = out.machine as { cores: number; cpu_model: string };
    expect(machine.cores).toBeGreaterThan(0);
    expect(machine.cpu_model.length).toBeGreaterThan(0);
    expect(out.onnxruntime).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('load: the real `sdstudio serve` with its own tiny random checkpoint answers every concurrent request', () => {
    // No --checkpoint: the probe writes its own; the CLIP vocabulary is the tests' one.
    const r = runBench([
      '--json',
      '--only',
      'load',
      '--load-requests',
      '24',
      '--load-clients',
      '4',
      '--clip-vocab',
      clipVocabPath(),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, number | null> & {
      checkpoint: { path: string | null };
      probes: { load: { errors: string[]; left_in_queue: number; rss_first_count: number } };
    };
    for (const key of LOAD_KEYS) expect(out, key).toHaveProperty(key);
    expect(out.probes.load.errors).toEqual([]);
    expect(out.load_requests).toBe(24);
    expect(out.load_clients).toBe(4);
    expect(out.load_answered).toBe(24);
    expect(out.load_lost).toBe(0);
    expect(out.probes.load.left_in_queue).toBe(0);
    expect(out.probes.load.rss_first_count).toBe(20);
    for (const key of [
      'load_requests_per_s',
      'load_generation_ms_mean',
      'load_latency_ms_p50',
      'load_rss_mb_after_first_20',
      'load_rss_mb_end',
    ]) {
      expect(typeof out[key], key).toBe('number');
      expect(out[key]!, key).toBeGreaterThan(0);
    }
    // The run cannot be shorter than its generations; the overhead is what is left per request.
    expect(out.load_overhead_ms_per_request!).toBeGreaterThanOrEqual(0);
    expect(out.load_latency_ms_p50!).toBeGreaterThanOrEqual(out.load_generation_ms_mean! * 0.5);
    expect(typeof out.load_rss_growth_pct).toBe('number');
    // Only the tiny checkpoint was needed: the 4.3 GB random SD 1.5 was not written.
    expect(out.checkpoint.path).toBeNull();
    // No engine probe ran: their figures are null.
    expect(out.unet_s_per_step_256_b2).toBeNull();
  });

  it('rejects an unknown probe with a usage line and exit code 2', () => {
    const r = runBench(['--only', 'unet9000']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown probe "unet9000"/);
    expect(r.stdout).toBe('');
  });
});
