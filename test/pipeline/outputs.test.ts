import { describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { newRgb } from '../../src/image/images.js';
import {
  dayFolder,
  encodePngWithInfotext,
  nextSequenceNumber,
  outputDir,
  saveOutput,
} from '../../src/pipeline/outputs.js';

/** tEXt (Latin-1) and uncompressed iTXt (UTF-8) chunks of a PNG. */
function textChunks(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    const nul = data.indexOf(0);
    if (type === 'tEXt') out[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    if (type === 'iTXt') {
      expect(data[nul + 1]).toBe(0); // not compressed
      let p = data.indexOf(0, nul + 3) + 1; // language tag
      p = data.indexOf(0, p) + 1; // translated keyword
      out[data.toString('latin1', 0, nul)] = data.toString('utf8', p);
    }
    at += 12 + len;
  }
  return out;
}

describe('outputs', () => {
  it('uses the A1111 layout and continues the counter', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sdout-'));
    const date = new Date(2024, 0, 5, 12);
    expect(dayFolder(date)).toBe('2024-01-05');
    const dir = outputDir(root, 'txt2img-images', date);
    expect(dir).toBe(join(root, 'txt2img-images', '2024-01-05'));
    expect(await nextSequenceNumber(dir)).toBe(0);
    const png = await encodePngWithInfotext(newRgb(8, 8, 1), 'a cat\nSteps: 1, Seed: 5, Size: 8x8');
    const a = await saveOutput(png, { root, kind: 'txt2img-images', seed: 5, date });
    const b = await saveOutput(png, { root, kind: 'txt2img-images', seed: 6, date });
    expect([a, b].map((p) => p.slice(dir.length + 1))).toEqual(['00000-5.png', '00001-6.png']);
    await writeFile(join(dir, '00041-1.png'), 'x');
    await writeFile(join(dir, 'notes.txt'), 'x');
    const c = await saveOutput(png, { root, kind: 'txt2img-images', seed: 7, date });
    expect(c.endsWith('00042-7.png')).toBe(true);
    const g = await saveOutput(png, { root, kind: 'img2img-grids', date });
    expect(g).toBe(join(root, 'img2img-grids', '2024-01-05', 'grid-0000.png'));
    // no temporary files left behind
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(await readFile(a)).toEqual(png);
  });

  it('writes the infotext as tEXt, or iTXt when it is not Latin-1', async () => {
    const latin = await encodePngWithInfotext(newRgb(4, 4), 'café\nSteps: 2');
    expect(textChunks(latin).parameters).toBe('café\nSteps: 2');
    expect(latin.includes(Buffer.from('tEXtparameters'))).toBe(true);
    const ru = await encodePngWithInfotext(newRgb(4, 4), 'кот 猫\nSteps: 2');
    expect(textChunks(ru).parameters).toBe('кот 猫\nSteps: 2');
    expect(ru.includes(Buffer.from('iTXtparameters'))).toBe(true);
    const decoded = await sharp(ru).raw().toBuffer();
    expect(decoded.length).toBe(4 * 4 * 3);
  });

  it('concurrent writers never share a name', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sdout-'));
    const date = new Date(2024, 0, 5);
    await mkdir(outputDir(root, 'txt2img-images', date), { recursive: true });
    const png = await encodePngWithInfotext(newRgb(4, 4), 'x');
    const paths = await Promise.all(
      Array.from({ length: 6 }, (_, i) => saveOutput(png, { root, kind: 'txt2img-images', seed: i, date })),
    );
    expect(new Set(paths.map((p) => p.split('/').pop()!.slice(0, 5))).size).toBe(6);
  });
});
