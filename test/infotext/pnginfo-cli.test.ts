import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pnginfo from '../../src/cli/commands/pnginfo.js';
import { goldenPath, repoRoot } from '../helpers/golden.js';

const run = promisify(execFile);

interface ImageRecord {
  file: string;
  kind: string;
  read_info_from_image: { geninfo: string | null; items: Record<string, string> };
  parse_generation_parameters: Record<string, unknown> | null;
}
const images = (
  JSON.parse(readFileSync(goldenPath('infotext', 'images.json'), 'utf8')) as { images: ImageRecord[] }
).images;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [join(repoRoot, 'bin', 'sdstudio.js'), 'pnginfo', ...args],
      {
        cwd: repoRoot,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Runs the command in this process, collecting what it prints. */
async function inProcess(...args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => ((stdout += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return { code: await pnginfo.run(args), stdout };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

function expectedFormat(rec: ImageRecord): string {
  if (rec.read_info_from_image.geninfo !== null) return 'a1111';
  return rec.kind.split('-')[0];
}

describe('pnginfo on every golden image (in process)', () => {
  for (const rec of images) {
    it(rec.file, async () => {
      const { code, stdout } = await inProcess('--json', goldenPath('infotext', rec.file));
      expect(code).toBe(0);
      const out = JSON.parse(stdout) as Record<string, unknown>;
      expect(out['format']).toBe(expectedFormat(rec));
      expect(out['infotext']).toBe(rec.read_info_from_image.geninfo);
      expect(out['parameters']).toStrictEqual(rec.parse_generation_parameters);
      for (const [k, v] of Object.entries(rec.read_info_from_image.items))
        expect((out['raw'] as Record<string, string>)[k]).toBe(v);
    });
  }
});

describe('sdstudio pnginfo as a subprocess', () => {
  // Two spawns for output and two for errors keep this fast; the in-process loop covers every image.
  const withText = images.find((r) => r.read_info_from_image.geninfo !== null && !r.file.endsWith('.png'));
  const without = images.find((r) => r.read_info_from_image.geninfo === null);
  it('prints the infotext as stored, and JSON with --json', async () => {
    const [plain, json] = await Promise.all([
      cli(goldenPath('infotext', withText!.file)),
      cli('--json', goldenPath('infotext', without!.file)),
    ]);
    expect(plain).toEqual({ code: 0, stdout: withText!.read_info_from_image.geninfo + '\n', stderr: '' });
    expect(json.code).toBe(0);
    const out = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(out['format']).toBe(expectedFormat(without!));
    expect(out['parameters']).toBeNull();
  });
  it('bad input: one line on stderr and a non-zero exit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-pnginfo-'));
    const notImage = join(dir, 'notes.png');
    writeFileSync(notImage, 'just text');
    const [missing, garbage] = await Promise.all([cli(join(dir, 'missing.png')), cli(notImage)]);
    for (const r of [missing, garbage]) {
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(missing.stderr).toContain('missing.png');
    expect(garbage.stderr).toContain('not a PNG, JPEG or WebP');
  });
});

describe('pnginfo in process: other tools, no metadata, usage errors', () => {
  it("prints another tool's chunks as stored", async () => {
    const rec = images.find((r) => r.read_info_from_image.geninfo === null)!;
    const { code, stdout } = await inProcess(goldenPath('infotext', rec.file));
    expect(code).toBe(0);
    for (const [k, v] of Object.entries(rec.read_info_from_image.items))
      expect(stdout).toContain(`${k}: ${v}\n`);
  });
  it('an image without metadata exits 1', async () => {
    const { default: sharp } = await import('sharp');
    const dir = mkdtempSync(join(tmpdir(), 'sdstudio-pnginfo-'));
    const plain = join(dir, 'plain.png');
    writeFileSync(
      plain,
      await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } })
        .png()
        .toBuffer(),
    );
    expect((await inProcess(plain)).code).toBe(1);
    expect(JSON.parse((await inProcess('--json', plain)).stdout)).toMatchObject({
      format: 'none',
      parameters: null,
    });
  });
  it('no FILE is a usage error', async () => {
    await expect(inProcess('--json')).rejects.toThrow(/give one image FILE/);
  });
});
