import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    // Engine tests build and run real onnxruntime sessions; give them room on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // The CLI tests spawn bin/sdstudio.js: make it run the source, never a stale dist/ build.
    env: { SDSTUDIO_SOURCE: '1' },
  },
});
