/**
 * The real server for browser tests: `node bin/sdstudio.js serve --port 0` in a temporary data folder
 * holding the tiny checkpoint, started as a user starts it; resolves with the URL it prints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { clipVocabPath, repoRoot } from '../../helpers/golden.js';
import { tinyCheckpoint } from '../../server/helpers.js';

export interface RunningServer {
  url: string;
  dataDir: string;
  /** Everything the server printed so far (for failure messages). */
  output: () => string;
  /** Stop the server; its data folder is removed unless `keepData`. */
  close: (options?: { keepData?: boolean }) => Promise<void>;
}

export async function startServer(
  options: { checkpoint?: boolean; args?: string[]; port?: number; dataDir?: string } = {},
): Promise<RunningServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'sdstudio-web-'));
  const ckptDir = join(dataDir, 'models', 'Stable-diffusion');
  if (!options.dataDir) {
    mkdirSync(ckptDir, { recursive: true });
    if (options.checkpoint !== false) {
      symlinkSync(tinyCheckpoint(), join(ckptDir, basename(tinyCheckpoint())));
    }
  }
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin', 'sdstudio.js'),
      'serve',
      '--port',
      String(options.port ?? 0),
      '--data-dir',
      dataDir,
      ...(options.args ?? []),
    ],
    {
      cwd: dataDir,
      env: { ...process.env, SDSTUDIO_CLIP_VOCAB: clipVocabPath() },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const close = async ({ keepData = false } = {}) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (!keepData) rmSync(dataDir, { recursive: true, force: true });
  };

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`sdstudio serve did not start in 60 s:\n${out}`)),
      60_000,
    );
    const check = () => {
      const m = /Running on local URL:\s+(http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].endsWith('/') ? m[1] : m[1] + '/');
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sdstudio serve exited with ${code}:\n${out}`));
    });
  }).catch(async (e) => {
    await close();
    throw e;
  });
  return { url, dataDir, output: () => out, close };
}
