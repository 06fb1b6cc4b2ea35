/**
 * Saving results where A1111 users expect them: `outputs/<mode>-images/<YYYY-MM-DD>/<NNNNN>-<seed>.png`
 * and `outputs/<mode>-grids/<YYYY-MM-DD>/grid-<NNNN>.png`, the infotext in the PNG's `parameters`
 * chunk. Each file is written under a temporary name and then linked into place, so a crash never
 * leaves a half-written image and two writers never overwrite each other.
 */
import { access, link, mkdir, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from './images.js';

export type OutputKind = 'txt2img-images' | 'img2img-images' | 'txt2img-grids' | 'img2img-grids';

/** Local date as A1111 names its day folders. */
export function dayFolder(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function outputDir(root: string, kind: OutputKind, date = new Date()): string {
  return join(root, kind, dayFolder(date));
}

/**
 * A1111 get_next_sequence_number: one more than the largest leading number of the files in `dir`
 * (after `basename-` when a basename is given); 0 for an empty or missing folder.
 */
export async function nextSequenceNumber(dir: string, basename = ''): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  const prefix = basename ? `${basename}-` : '';
  let max = -1;
  for (const name of names) {
    if (!name.startsWith(prefix) || name.startsWith('.')) continue;
    const stem = name.slice(prefix.length).replace(/\.[^.]*$/, '');
    const first = stem.split('-')[0]!;
    if (/^\d+$/.test(first)) max = Math.max(max, Number(first));
  }
  return max + 1;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * A PNG text chunk as A1111/Pillow writes it: tEXt when the text is Latin-1, otherwise an
 * uncompressed iTXt (UTF-8), so non-Latin prompts survive.
 */
export function pngTextChunk(key: string, text: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (/^[\u0000-\u00ff]*$/.test(text)) {
    return chunk(
      'tEXt',
      Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]),
    );
  }
  return chunk(
    'iTXt',
    Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]),
  );
}

/** Inserts text chunks right after IHDR of a PNG. */
export function withPngText(png: Buffer, texts: Record<string, string>): Buffer {
  const ihdrEnd = 8 + 8 + png.readUInt32BE(8) + 4;
  const chunks = Object.entries(texts).map(([k, v]) => pngTextChunk(k, v));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** PNG bytes of an image with its infotext in the `parameters` chunk (nothing when infotext is empty). */
export async function encodePngWithInfotext(img: RgbImage, infotext: string): Promise<Buffer> {
  const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
  return infotext ? withPngText(png, { parameters: infotext }) : png;
}

export interface SaveOptions {
  /** The outputs folder (A1111: `outputs/`). */
  root: string;
  kind: OutputKind;
  /** Images: the seed in the file name. Grids: ignored. */
  seed?: number;
  date?: Date;
}

/** Saves into one folder run one after another within this process (numbers are read, then taken). */
const folderQueues = new Map<string, Promise<unknown>>();

/** Writes PNG bytes to the next free name of the A1111 layout; returns the path written. */
export async function saveOutput(png: Uint8Array, opts: SaveOptions): Promise<string> {
  const dir = outputDir(opts.root, opts.kind, opts.date);
  const prev = folderQueues.get(dir) ?? Promise.resolve();
  const run = prev.then(
    () => saveNow(png, opts),
    () => saveNow(png, opts),
  );
  folderQueues.set(dir, run);
  try {
    return await run;
  } finally {
    if (folderQueues.get(dir) === run) folderQueues.delete(dir);
  }
}

async function saveNow(png: Uint8Array, opts: SaveOptions): Promise<string> {
  const dir = outputDir(opts.root, opts.kind, opts.date);
  await mkdir(dir, { recursive: true });
  const grid = opts.kind.endsWith('-grids');
  const basename = grid ? 'grid' : '';
  const tmp = join(dir, `.tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.png`);
  await writeFile(tmp, png);
  try {
    let n = await nextSequenceNumber(dir, basename);
    for (let attempt = 0; attempt < 1000; attempt++, n++) {
      const name = grid
        ? `grid-${String(n).padStart(4, '0')}.png`
        : `${String(n).padStart(5, '0')}-${opts.seed ?? 0}.png`;
      const target = join(dir, name);
      try {
        // link() fails when the name exists, so a concurrent writer never loses its file.
        await link(tmp, target);
        return target;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        // File systems without hard links: rename, after checking the name is free.
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err;
        const taken = await access(target).then(
          () => true,
          () => false,
        );
        if (taken) continue;
        await rename(tmp, target);
        return target;
      }
    }
    throw new Error(`no free file name in ${dir}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
