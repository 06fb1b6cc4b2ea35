import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import {
  addExifUserComment,
  addPngTextChunk,
  encodeJpegWithInfotext,
  encodePngWithInfotext,
  encodeWebpWithInfotext,
  pyFloatRepr,
  readGenerationInfo,
  readImageMetadata,
} from '../../src/infotext/image-metadata.js';
import { parseInfotext } from '../../src/infotext/infotext.js';
import { makePngChunk, readPngChunks } from '../../src/formats/png-chunks.js';
import { exifTiffWithUserComment, jpegExif, userCommentBytes, webpExif } from '../../src/formats/exif.js';
import { goldenPath } from '../helpers/golden.js';

interface ImageRecord {
  file: string;
  kind: string;
  written_parameters: string | null;
  size: [number, number];
  png_chunks?: { type: string; length: number; keyword?: string }[];
  expected_text_chunk?: string;
  read_info_from_image: { geninfo: string | null; items: Record<string, string> };
  parse_generation_parameters: Record<string, unknown> | null;
  comfy_prompt?: unknown;
  comfy_workflow?: unknown;
  invokeai_metadata?: unknown;
}

const images = (
  JSON.parse(readFileSync(goldenPath('infotext', 'images.json'), 'utf8')) as { images: ImageRecord[] }
).images;
const pixels = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) & 255) };

describe('reading the golden images as A1111 read_info_from_image', () => {
  it('golden file has images', () => expect(images.length).toBeGreaterThan(0));
  for (const rec of images) {
    const path = goldenPath('infotext', rec.file);
    it(`${rec.file}: geninfo and items`, async () => {
      expect(await readGenerationInfo(path)).toStrictEqual(rec.read_info_from_image);
    });
    it(`${rec.file}: parsed parameters`, async () => {
      const { geninfo } = await readGenerationInfo(path);
      expect(geninfo === null ? null : parseInfotext(geninfo)).toStrictEqual(rec.parse_generation_parameters);
    });
    it(`${rec.file}: metadata by tool`, async () => {
      const meta = await readImageMetadata(readFileSync(path));
      expect(meta.problems).toEqual([]);
      expect([meta.width ?? rec.size[0], meta.height ?? rec.size[1]]).toEqual(rec.size);
      if (rec.comfy_prompt !== undefined) {
        expect(meta.source).toBe('comfyui');
        expect(meta.comfyui?.prompt).toEqual(rec.comfy_prompt);
        expect(meta.comfyui?.workflow).toEqual(rec.comfy_workflow);
      } else if (rec.invokeai_metadata !== undefined) {
        expect(meta.source).toBe('invokeai');
        expect(meta.invokeai?.metadata).toEqual(rec.invokeai_metadata);
      } else {
        expect(meta.source).toBe('a1111');
        expect(meta.parameters).toBe(rec.written_parameters);
      }
    });
  }
});

describe('writing as A1111 save_image_with_geninfo', () => {
  for (const rec of images.filter((r) => r.written_parameters !== null)) {
    const text = rec.written_parameters!;
    if (rec.png_chunks) {
      it(`${rec.file}: same text chunk bytes (${rec.expected_text_chunk})`, async () => {
        const ours = readPngChunks(await encodePngWithInfotext(pixels, text)).chunks;
        const theirs = readPngChunks(readFileSync(goldenPath('infotext', rec.file))).chunks;
        const t = (cs: typeof ours) => cs.find((c) => c.type === 'tEXt' || c.type === 'iTXt')!;
        expect(t(ours).type).toBe(rec.expected_text_chunk);
        expect(Buffer.from(t(ours).data).equals(Buffer.from(t(theirs).data))).toBe(true);
        // Text chunks go before the image data, as Pillow writes them.
        expect(ours.map((c) => c.type).indexOf(t(ours).type)).toBeLessThan(
          ours.map((c) => c.type).indexOf('IDAT'),
        );
      });
    } else {
      const isJpeg = rec.file.endsWith('.jpg');
      it(`${rec.file}: same EXIF block, read back`, async () => {
        const golden = readFileSync(goldenPath('infotext', rec.file));
        const ours = isJpeg
          ? await encodeJpegWithInfotext(pixels, text)
          : await encodeWebpWithInfotext(pixels, text);
        const exifOf = (b: Uint8Array) => {
          const e = isJpeg ? jpegExif(b) : webpExif(b);
          return Buffer.from(isJpeg ? e!.subarray(6) : e!);
        };
        expect(exifOf(ours).equals(exifOf(golden))).toBe(true);
        expect((await readGenerationInfo(ours)).geninfo).toBe(text);
        const meta = await sharp(ours).metadata();
        expect([meta.width, meta.height]).toEqual([64, 64]);
      });
    }
  }
});

describe('round trips and edge cases', () => {
  it('Russian, CJK and emoji survive PNG (iTXt), JPEG and WebP', async () => {
    const text = 'Кошка 日本 🐱\nNegative prompt: плохо\nSteps: 20, Sampler: Euler a, CFG scale: 7';
    for (const enc of [encodePngWithInfotext, encodeJpegWithInfotext, encodeWebpWithInfotext]) {
      const meta = await readImageMetadata(await enc(pixels, text));
      expect(meta.parameters).toBe(text);
    }
  });
  it('adds a chunk to an existing PNG and to sharp instances; EXIF to existing JPEG replaces the old one', async () => {
    const png = await encodePngWithInfotext(
      sharp({ create: { width: 8, height: 4, channels: 4, background: '#f00' } }),
      'a',
      {
        extra: 'é',
      },
    );
    const meta = await readImageMetadata(addPngTextChunk(png, 'workflow', '{"a": 1}'));
    expect(meta.raw).toEqual({ parameters: 'a', extra: 'é', workflow: '{"a": 1}' });
    expect([meta.width, meta.height]).toEqual([8, 4]);
    const jpeg = await encodeJpegWithInfotext(pixels, 'first');
    const again = addExifUserComment(jpeg, 'second');
    expect((await readGenerationInfo(again)).geninfo).toBe('second');
  });
  it('the EXIF block is what piexif dumps', () => {
    const tiff = exifTiffWithUserComment(userCommentBytes('ab'));
    expect(tiff.toString('hex')).toBe(
      ['4d4d002a00000008', '0001', '8769', '0004', '00000001', '0000001a', '00000000'].join('') +
        ['0001', '9286', '0007', '0000000c', '00000028', '554e49434f444500', '00610062'].join(''),
    );
  });
  it('reads zTXt and compressed iTXt, reports a bad CRC and skips that chunk', async () => {
    const { deflateSync } = await import('node:zlib');
    const png = await encodePngWithInfotext(pixels, null);
    const z = makePngChunk(
      'zTXt',
      Buffer.concat([
        Buffer.from('parameters\0\0', 'latin1'),
        deflateSync(Buffer.from('zipped é', 'latin1')),
      ]),
    );
    const it1 = makePngChunk(
      'iTXt',
      Buffer.concat([
        Buffer.from('note\0\x01\x00\0\0', 'latin1'),
        deflateSync(Buffer.from('сжатый', 'utf8')),
      ]),
    );
    const bad = makePngChunk('tEXt', Buffer.from('bad\0value', 'latin1'));
    bad[bad.length - 1] ^= 0xff;
    const { insertPngChunks } = await import('../../src/formats/png-chunks.js');
    const meta = await readImageMetadata(insertPngChunks(png, [z, it1, bad]));
    expect(meta.parameters).toBe('zipped é');
    expect(meta.raw['note']).toBe('сжатый');
    expect(meta.raw['bad']).toBeUndefined();
    expect(meta.problems.join('\n')).toMatch(/bad CRC/);
  });
  it('a decompression bomb is refused, not inflated', async () => {
    const { deflateSync } = await import('node:zlib');
    const { insertPngChunks } = await import('../../src/formats/png-chunks.js');
    const bomb = makePngChunk(
      'zTXt',
      Buffer.concat([
        Buffer.from('parameters\0\0', 'latin1'),
        deflateSync(Buffer.alloc(64 * 1024 * 1024, 0x41)),
      ]),
    );
    const meta = await readImageMetadata(insertPngChunks(await encodePngWithInfotext(pixels, null), [bomb]));
    expect(meta.parameters).toBeUndefined();
    expect(meta.problems.length).toBe(1);
  });
  it('truncated and lying files give problems, not crashes', async () => {
    const png = await encodePngWithInfotext(pixels, 'x');
    for (const cut of [9, 20, 40, png.length - 3]) {
      const meta = await readImageMetadata(png.subarray(0, cut));
      expect(meta.imageFormat).toBe('png');
    }
    const lying = Buffer.from(png);
    lying.writeUInt32BE(0x7ffffff0, 8);
    expect((await readImageMetadata(lying)).problems[0]).toMatch(/past the end/);
    const jpeg = await encodeJpegWithInfotext(pixels, 'x');
    for (const cut of [3, 10, 30, 100]) await readImageMetadata(jpeg.subarray(0, cut));
  });
  it('not an image, a folder, a missing file: UserError with the name', async () => {
    await expect(readImageMetadata(Buffer.from('hello'))).rejects.toThrow(/not a PNG, JPEG or WebP/);
    await expect(readImageMetadata('/nonexistent/x.png')).rejects.toThrow(/no such file/);
    await expect(readImageMetadata('/tmp')).rejects.toThrow(/folder/);
  });
  it('NovelAI images become an A1111 infotext as A1111 builds it', async () => {
    const png = await encodePngWithInfotext(pixels, null, {
      Software: 'NovelAI',
      Description: 'a cat',
      Comment: '{"steps": 28, "sampler": "k_euler_ancestral", "seed": 1, "scale": 11.0, "uc": "lowres"}',
    });
    const meta = await readImageMetadata(png);
    expect(meta.source).toBe('novelai');
    expect(meta.parameters).toBe(
      'a cat\nNegative prompt: lowres\nSteps: 28, Sampler: Euler a, CFG scale: 11.0, Seed: 1, Size: 64x64, Clip skip: 2, ENSD: 31337',
    );
  });
  it('pyFloatRepr matches Python repr', () => {
    expect([11, 5.5, 1e16, 1e-5, 0.0001, 123456789012345680, -0, 1.5e300].map(pyFloatRepr)).toEqual([
      '11.0',
      '5.5',
      '1e+16',
      '1e-05',
      '0.0001',
      '1.2345678901234568e+17',
      '-0.0',
      '1.5e+300',
    ]);
  });
});
