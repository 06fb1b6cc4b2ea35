/**
 * `npm run build:web` once per test run, whichever browser test file comes first: the UI of this
 * checkout, not whatever build was left in web/dist. Test files run in parallel workers, and a
 * second build would empty web/dist under a page another file's server is serving.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../../helpers/golden.js';

export async function buildWebOnce(): Promise<void> {
  // Set by test/helpers/global-setup.ts for each `vitest run`; a file run alone builds every time.
  const run = process.env.SDSTUDIO_TEST_RUN ?? `${process.pid}`;
  const marker = webBuildMarker(run);
  const lock = `${marker}.lock`;
  for (;;) {
    if (existsSync(marker)) return;
    try {
      mkdirSync(lock);
    } catch {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    try {
      if (!existsSync(marker)) {
        const vite = join(repoRoot, 'node_modules', 'vite', 'bin', 'vite.js');
        await promisify(execFile)(
          process.execPath,
          [vite, 'build', '--config', 'web/vite.config.ts', '--logLevel', 'error'],
          { cwd: repoRoot },
        );
        writeFileSync(marker, '');
      }
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
    return;
  }
}

/** The marker's name for a run (global-setup removes it at the end). */
export const webBuildMarker = (run: string) => join(tmpdir(), `sdstudio-web-built-${run}`);
