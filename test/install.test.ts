/**
 * The install as the README gives it: onnxruntime-node's postinstall (which downloads CUDA
 * binaries, failing offline) is denied through package.json's `allowScripts`, and npm has nothing
 * to warn about in the project's configuration (npm 11 warned `Unknown project config
 * "onnxruntime-node-install"` on every call, npx included).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/golden.js';

describe('install configuration', () => {
  it("denies onnxruntime-node's install script in package.json allowScripts", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      allowScripts?: Record<string, boolean>;
    };
    expect(pkg.allowScripts?.['onnxruntime-node']).toBe(false);
  });

  it('npm prints no configuration warning in the project', async () => {
    const stderr = await new Promise<string>((resolve, reject) => {
      execFile('npm', ['pkg', 'get', 'name'], { cwd: repoRoot, timeout: 60_000 }, (err, _out, errText) =>
        err ? reject(err) : resolve(errText),
      );
    });
    expect(stderr).not.toMatch(/Unknown project config/);
  });
});
