/**
 * Saving results where A1111 users expect them: `outputs/<mode>-images/<YYYY-MM-DD>/<NNNNN>-<seed>.png`
 * and `outputs/<mode>-grids/<YYYY-MM-DD>/grid-<NNNN>.png`, the infotext in the PNG's `parameters`
 * chunk. Each file is written under a temporary name and then linked into place, so a crash never
 * leaves a half-written image and two writers never overwrite each other.
 */
import { access, link, mkdir, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodePngWithInfotext as encodeImageWithInfotext } from '../infotext/image-metadata.js';
import type { RgbImage } from '../image/images.js';

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

/**
 * PNG bytes of an image with its infotext in the `parameters` chunk (nothing when infotext is empty),
 * written as A1111/Pillow writes it (tEXt, or iTXt when the text is not Latin-1).
 */
export function encodePngWithInfotext(img: RgbImage, infotext: string): Promise<Buffer> {
  return encodeImageWithInfotext(img, infotext || null);
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
    throw new Error(`no free file name in ${dir} after 1000 tries; move some files out of it`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
