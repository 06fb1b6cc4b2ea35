/**
 * bin/sdstudio.js itself, on a copy next to a fake `dist/` and `src/` (so no build of the real tree
 * is needed or touched): which one it runs, and the huge-page re-exec of the network commands.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/golden.js';

const root = mkdtempSync(join(tmpdir(), 'sdstudio-bin-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'bin'));
mkdirSync(join(root, 'dist', 'cli'), { recursive: true });
mkdirSync(join(root, 'src', 'cli'), { recursive: true });
copyFileSync(join(repoRoot, 'bin', 'sdstudio.js'), join(root, 'bin', 'sdstudio.js'));
symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'));
writeFileSync(join(root, 'package.json'), '{"type": "module"}');
const report = (from: string) =>
  `console.log(JSON.stringify({ from: '${from}', reexec: process.env.SDSTUDIO_REEXEC ?? null, ` +
  `tunables: process.env.GLIBC_TUNABLES ?? null, argv: process.argv.slice(2) }));\n`;
writeFileSync(join(root, 'dist', 'cli', 'main.js'), report('dist'));
writeFileSync(
  join(root, 'src', 'cli', 'main.ts'),
  `const from: string = 'src';\n${report('src').replace("'src'", 'from')}`,
);

function bin(args: string[], env: Record<string, string | undefined>): Promise<Record<string, unknown>> {
  const e: Record<string, string | undefined> = { ...process.env, ...env };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(root, 'bin', 'sdstudio.js'), ...args],
      { env: e },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Record<string, unknown>);
      },
    );
  });
}

describe('bin/sdstudio.js', () => {
  it('runs the build when there is one, and the source under SDSTUDIO_SOURCE=1 (as the tests do)', async () => {
    const [built, source] = await Promise.all([
      bin(['inspect', 'x'], { SDSTUDIO_SOURCE: undefined }),
      bin(['inspect', 'x'], { SDSTUDIO_SOURCE: '1' }),
    ]);
    expect(built).toMatchObject({ from: 'dist', argv: ['inspect', 'x'], reexec: null });
    expect(source).toMatchObject({ from: 'src', argv: ['inspect', 'x'], reexec: null });
  });

  it.runIf(process.platform === 'linux')(
    're-executes txt2img once with huge pages asked of malloc, keeping the arguments',
    async () => {
      const env = { SDSTUDIO_SOURCE: '1', SDSTUDIO_HUGEPAGES: undefined, GLIBC_TUNABLES: undefined };
      const [net, off] = await Promise.all([
        bin(['txt2img', 'a cat', '--steps', '2'], { ...env, SDSTUDIO_REEXEC: undefined }),
        bin(['txt2img', 'a cat'], { ...env, SDSTUDIO_REEXEC: undefined, SDSTUDIO_HUGEPAGES: '0' }),
      ]);
      expect(net).toMatchObject({
        from: 'src',
        reexec: '1',
        tunables: 'glibc.malloc.hugetlb=1',
        argv: ['txt2img', 'a cat', '--steps', '2'],
      });
      expect(off).toMatchObject({ reexec: null, tunables: null });
    },
  );
});
