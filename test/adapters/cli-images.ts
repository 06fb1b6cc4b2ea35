/** Helpers of the adapters' end-to-end CLI tests: one txt2img run, its pixels, and their difference. */
import sharp from 'sharp';
import { expect } from 'vitest';
import { runCli } from '../pipeline/cli-helpers.js';

/** `sdstudio txt2img ARGS` in `cwd`, which must succeed with exactly one image. */
export async function txt2imgOne(args: string[], cwd: string): Promise<{ path: string; stderr: string }> {
  const r = await runCli(['txt2img', ...args], cwd);
  expect(r.code, r.stderr).toBe(0);
  const paths = r.stdout.trim().split('\n');
  expect(paths).toHaveLength(1);
  return { path: paths[0]!, stderr: r.stderr };
}

/** An image file's raw pixels. */
export async function pixels(path: string): Promise<Buffer> {
  return sharp(path).raw().toBuffer();
}

/** The largest per-channel difference of two equally sized pixel buffers. */
export function maxDiff(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
