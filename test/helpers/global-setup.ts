/**
 * Vitest global setup: the suite never touches the user's real cache (~/.cache/sdstudio). Every
 * test process gets SDSTUDIO_CACHE = one temporary folder for the run (removed at the end), or
 * $SDSTUDIO_TEST_CACHE when set (e.g. a CI cache kept between runs).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export default function setup(): () => void {
  const chosen = process.env.SDSTUDIO_TEST_CACHE;
  const dir = chosen ? resolve(chosen) : mkdtempSync(join(tmpdir(), 'sdstudio-test-cache-'));
  process.env.SDSTUDIO_CACHE = dir;
  // Names this run for work done once per run across workers (test/web/helpers/build.ts).
  const run = randomUUID();
  process.env.SDSTUDIO_TEST_RUN = run;
  return () => {
    if (!chosen) rmSync(dir, { recursive: true, force: true });
    rmSync(join(tmpdir(), `sdstudio-web-built-${run}`), { force: true });
  };
}
