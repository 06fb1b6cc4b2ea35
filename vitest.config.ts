import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    // Engine tests build and run real onnxruntime sessions; give them room on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Browser tests poll the page; on a loaded 2-core machine a debounced search or a queued job can
    // take longer than expect.poll's 1 s default to show.
    expect: { poll: { timeout: 10_000 } },
    // Vitest's default is one worker fewer than the CPUs: a single worker on a 2-core machine, so
    // the files ran one after another. Much of a file's time is single-threaded (graph building,
    // CLI processes starting, session creation), so two workers on two cores overlap it.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The CLI tests spawn bin/sdstudio.js: make it run the source, never a stale dist/ build.
    // The CLI prints a plain progress line every few seconds when stderr is not a terminal (logs);
    // on a busy machine a tiny job may take that long, and tests expect quiet runs. Tests of those
    // lines set the interval themselves.
    env: { SDSTUDIO_SOURCE: '1', SDSTUDIO_PROGRESS_LOG: '0' },
    // A temporary SDSTUDIO_CACHE for the run: the user's ~/.cache/sdstudio is never touched.
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
