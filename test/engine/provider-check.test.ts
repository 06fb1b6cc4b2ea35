/**
 * A GPU provider that cannot start is said first, in one line naming the providers this install
 * has, before any weights are prepared (no weights cache written) and without onnxruntime's or
 * the driver's log lines.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ensureProvider,
  installedProviders,
  providerFailureReason,
} from '../../src/runtime/provider-check.js';
import { UserError } from '../../src/util/errors.js';
import { runCli, tiny } from '../pipeline/cli-helpers.js';
import { webgpuMissing } from '../helpers/webgpu.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-provider-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cudaInstalled = installedProviders().includes('cuda');
const webgpuWhy = await webgpuMissing();

describe('execution provider check', () => {
  it('the CPU is always there; an unknown name is refused', async () => {
    expect(installedProviders()).toContain('cpu');
    await expect(ensureProvider('cpu')).resolves.toBe('cpu');
    await expect(ensureProvider('tpu')).rejects.toThrow(/unknown execution provider "tpu"/);
  });

  it.skipIf(cudaInstalled)(
    'cuda without its libraries: a UserError naming what this install has',
    async () => {
      const err = await ensureProvider('cuda').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(
        /cuda execution provider is not installed.*this install has: cpu/,
      );
      expect((err as Error).message).not.toContain('\n');
    },
  );

  it.skipIf(webgpuWhy === undefined)(
    'webgpu without an adapter: said in one line, from a child process',
    async () => {
      const err = await ensureProvider('webgpu').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(
        /webgpu execution provider cannot start here \(.+\); this install has: cpu/,
      );
      expect((err as Error).message).not.toMatch(/\n|onnxruntime_src|\.cc:\d+/);
    },
  );

  it("onnxruntime's reason loses its source location and condition", () => {
    expect(
      providerFailureReason(
        '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::x()::<lambda()> ' +
          'adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n',
      ),
    ).toBe('Failed to get a WebGPU adapter: No supported adapters');
  });

  const missing = [cudaInstalled ? undefined : 'cuda', webgpuWhy === undefined ? undefined : 'webgpu'].filter(
    (p): p is string => p !== undefined,
  );
  it.skipIf(missing.length === 0)(
    'txt2img --provider <missing>: one line, exit 2, no weights prepared',
    async () => {
      for (const provider of missing) {
        const cache = join(dir, `cache-${provider}`);
        const r = await runCli(
          [
            'txt2img',
            'a cube',
            '--model',
            tiny,
            '--width',
            '64',
            '--height',
            '64',
            '--steps',
            '1',
            '--provider',
            provider,
          ],
          dir,
          { SDSTUDIO_CACHE: cache },
        );
        expect(r.code, r.stderr).toBe(2);
        const lines = r.stderr.trim().split('\n');
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(new RegExp(`${provider} execution provider .*this install has: cpu`));
        expect(
          (existsSync(cache) ? readdirSync(cache, { recursive: true }) : []).filter((f) =>
            String(f).startsWith('weights'),
          ),
          provider,
        ).toEqual([]);
      }
    },
  );
});
