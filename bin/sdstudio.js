#!/usr/bin/env node
// Entry point: run the compiled CLI when built, else the TypeScript source through tsx.
// SDSTUDIO_SOURCE=1 runs the source even when a build exists (the test suite sets it, so that a
// stale `dist/` is never what the tests check).
import { spawn } from 'node:child_process';
import process from 'node:process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

// Commands that run the networks start again with glibc's malloc asking for transparent huge pages
// (glibc.malloc.hugetlb=1; tunables are read only at process start). onnxruntime's fresh arena is
// then faulted in 2 MB pages instead of 4 KB ones: the first 512² UNet step of a session takes
// ≈ 0.7 s less (docs/performance.md). SDSTUDIO_HUGEPAGES=0 turns this off.
const NETWORK_COMMANDS = new Set(['txt2img', 'img2img']);
const tunables = process.env.GLIBC_TUNABLES ?? '';
if (
  process.platform === 'linux' &&
  NETWORK_COMMANDS.has(process.argv[2] ?? '') &&
  !tunables.includes('glibc.malloc.hugetlb') &&
  process.env.SDSTUDIO_HUGEPAGES !== '0' &&
  // Never twice: glibc drops tunables for privileged (setuid/capability) processes.
  process.env.SDSTUDIO_REEXEC !== '1'
) {
  const env = {
    ...process.env,
    SDSTUDIO_REEXEC: '1',
    GLIBC_TUNABLES: [tunables, 'glibc.malloc.hugetlb=1'].filter(Boolean).join(':'),
  };
  // The IPC channel is the child's lifeline: it closes when this process ends in any way, even by
  // `kill -9`, and the child then ends too (below) instead of running on unseen.
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env,
  });
  // At a terminal, Ctrl-C reaches the child by itself (same process group); a SIGINT sent to this
  // process alone (a supervisor, `kill -INT`), SIGTERM and SIGHUP are passed on (the child counts
  // the same signal twice within a second once, for a hangup that reaches both).
  process.on('SIGINT', () => {
    if (!process.stderr.isTTY) child.kill('SIGINT');
  });
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  process.on('SIGHUP', () => child.kill('SIGHUP'));
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  if (process.env.SDSTUDIO_REEXEC === '1' && typeof process.send === 'function') {
    // Re-executed by the branch above: end when that parent is gone (its IPC channel closed).
    // What was saved stays; the batch in flight is lost, as it would be to a kill of one process.
    process.on('disconnect', () => {
      process.stderr.write('sdstudio: the parent process ended; stopping\n');
      process.exit(129);
    });
    process.channel?.unref();
  }
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const built = join(root, 'dist', 'cli', 'main.js');
  if (existsSync(built) && process.env.SDSTUDIO_SOURCE !== '1') {
    await import(pathToFileURL(built).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
  }
}
