/**
 * Model file hashes as A1111 shows them (modules/hashes.py, sd_models.py):
 * - sha256 of the whole file; "Model hash" (autov2) = its first 10 hex chars;
 * - legacy `model_hash`: sha256 of the 0x10000 bytes at offset 0x100000 (fewer, or none, when the
 *   file is shorter), first 8 hex chars;
 * - for .safetensors, the kohya "addnet" hash A1111 uses for LoRA hashes in infotext: sha256 of
 *   everything after the header.
 * One streaming pass computes all of them. Results are cached by path + size + mtime in a JSON
 * file, so a second call on a 4 GB file is instant.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, stat, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { UserError } from '../util/errors.js';

export interface FileHashes {
  sha256: string;
  /** A1111 "Model hash": the first 10 hex chars of sha256. */
  autov2: string;
  /** A1111's old 8-char hash. */
  legacy: string;
  /** sha256 of a .safetensors file's data section (kohya/A1111 addnet hash); absent for other files. */
  addnet?: string;
}

export interface HashOptions {
  /** Where hashes.json lives; default $SDSTUDIO_CACHE, else ~/.cache/sdstudio. */
  cacheDir?: string;
  /** Skip the cache entirely (neither read nor written). */
  noCache?: boolean;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface HashResult extends FileHashes {
  /** True when the answer came from the cache without reading the file. */
  cached: boolean;
}

const CACHE_FILE = 'hashes.json';
const CACHE_VERSION = 1;
const CHUNK = 1 << 20;
const LEGACY_OFFSET = 0x100000;
const LEGACY_LENGTH = 0x10000;

interface CacheEntry extends FileHashes {
  size: number;
  mtimeMs: number;
}

interface CacheFile {
  version: number;
  entries: Record<string, CacheEntry>;
}

export function defaultCacheDir(): string {
  return process.env.SDSTUDIO_CACHE
    ? resolve(process.env.SDSTUDIO_CACHE)
    : join(homedir(), '.cache', 'sdstudio');
}

export function hashCachePath(cacheDir = defaultCacheDir()): string {
  return join(cacheDir, CACHE_FILE);
}

async function loadCache(file: string): Promise<CacheFile> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as CacheFile;
    if (parsed && parsed.version === CACHE_VERSION && typeof parsed.entries === 'object' && parsed.entries) {
      return parsed;
    }
  } catch {
    // Missing or corrupt cache: start afresh (it only ever saves time).
  }
  return { version: CACHE_VERSION, entries: {} };
}

async function saveCache(file: string, dir: string, cache: CacheFile): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(file, JSON.stringify(cache, null, 1));
}

/**
 * The hashes of `path` when the cache already has them for its current size and mtime, else null;
 * never reads the file itself (finding a checkpoint by hash must not hash every file).
 */
export async function cachedHashes(path: string, cacheDir = defaultCacheDir()): Promise<FileHashes | null> {
  try {
    const abs = await realpath(path);
    const st = await stat(abs);
    const hit = (await loadCache(hashCachePath(cacheDir))).entries[abs];
    if (!hit || hit.size !== st.size || hit.mtimeMs !== st.mtimeMs || typeof hit.sha256 !== 'string') {
      return null;
    }
    const { size: _s, mtimeMs: _m, ...hashes } = hit;
    return hashes;
  } catch {
    return null;
  }
}

/** Hash one file (streaming), from the cache when its path, size and mtime are unchanged. */
export async function hashFile(path: string, opts: HashOptions = {}): Promise<HashResult> {
  let st;
  let abs: string;
  try {
    abs = await realpath(path);
    st = await stat(abs);
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isFile()) throw new UserError(`${path} is not a file (hash a single model file)`);

  const dir = opts.cacheDir ?? defaultCacheDir();
  const file = hashCachePath(dir);
  if (!opts.noCache) {
    const hit = (await loadCache(file)).entries[abs];
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs && typeof hit.sha256 === 'string') {
      const { size: _s, mtimeMs: _m, ...hashes } = hit;
      return { ...hashes, cached: true };
    }
  }

  const hashes = await computeHashes(abs, st.size, opts.onProgress);
  if (!opts.noCache) {
    // Re-read just before writing so concurrent hashers lose as little as possible.
    const cache = await loadCache(file);
    cache.entries[abs] = { ...hashes, size: st.size, mtimeMs: st.mtimeMs };
    await saveCache(file, dir, cache);
  }
  return { ...hashes, cached: false };
}

/** The data start of a .safetensors file (8 + header length), or undefined when it is not one. */
function safetensorsDataStart(head: Uint8Array, size: number): number | undefined {
  if (head.byteLength < 9 || head[8] !== 0x7b) return undefined;
  const n = Buffer.from(head.buffer, head.byteOffset, 8).readBigUInt64LE(0);
  if (n + 8n > BigInt(size)) return undefined;
  return Number(n) + 8;
}

async function computeHashes(
  path: string,
  size: number,
  onProgress?: (done: number, total: number) => void,
): Promise<FileHashes> {
  const fh = await open(path, 'r');
  try {
    const full = createHash('sha256');
    const legacy = createHash('sha256');
    let addnet: ReturnType<typeof createHash> | undefined;
    let dataStart: number | undefined;
    const buf = new Uint8Array(CHUNK);
    let pos = 0;
    while (true) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      if (pos === 0) {
        dataStart = safetensorsDataStart(chunk, size);
        if (dataStart !== undefined) addnet = createHash('sha256');
      }
      full.update(chunk);
      feedRange(legacy, chunk, pos, LEGACY_OFFSET, LEGACY_OFFSET + LEGACY_LENGTH);
      if (addnet && dataStart !== undefined) feedRange(addnet, chunk, pos, dataStart, Infinity);
      pos += bytesRead;
      onProgress?.(pos, size);
    }
    const sha256 = full.digest('hex');
    const out: FileHashes = { sha256, autov2: sha256.slice(0, 10), legacy: legacy.digest('hex').slice(0, 8) };
    if (addnet) out.addnet = addnet.digest('hex');
    return out;
  } finally {
    await fh.close();
  }
}

/** Feed the part of `chunk` (which starts at file offset `pos`) that lies in [from, to). */
function feedRange(
  h: ReturnType<typeof createHash>,
  chunk: Uint8Array,
  pos: number,
  from: number,
  to: number,
): void {
  const start = Math.max(from, pos);
  const end = Math.min(to, pos + chunk.byteLength);
  if (end > start) h.update(chunk.subarray(start - pos, end - pos));
}
