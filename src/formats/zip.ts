/**
 * Just enough of the zip format to read a PyTorch checkpoint in place: the central directory
 * (zip64 included, for files over 4 GB) and the absolute offset of each entry's bytes.
 * Only stored (uncompressed) entries are accepted — torch writes nothing else — so there is no
 * inflater here and no zip bomb can expand; nothing is ever extracted to disk.
 */
import type { FileHandle } from 'node:fs/promises';
import { UnsafeFileError, UserError } from '../util/errors.js';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  /** Offset of the local file header. */
  headerOffset: number;
}

export interface ZipDirectory {
  entries: ZipEntry[];
  /** Where the central directory starts: entry data must end before it. */
  centralDirOffset: number;
  fileSize: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CDH_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;
/** A central directory larger than this is not a checkpoint (SD files have ~1-3k entries). */
const MAX_CENTRAL_DIR_BYTES = 64 * 1024 * 1024;
const MAX_ENTRIES = 1_000_000;

async function readAt(fh: FileHandle, position: number, length: number, path: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new UserError(`${path}: unexpected end of file (truncated zip?)`);
    done += bytesRead;
  }
  return buf;
}

function u64(b: Buffer, off: number, path: string): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UserError(`${path}: zip64 field out of range`);
  return Number(v);
}

/** Read and sanity-check the central directory. */
export async function readZipDirectory(fh: FileHandle, path: string): Promise<ZipDirectory> {
  const bad = (why: string) =>
    new UserError(
      `${path}: not a readable zip file: ${why}. The checkpoint is damaged or incomplete; download it again`,
    );
  const { size: fileSize } = await fh.stat();
  if (fileSize < 22) throw bad('file too short');
  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  const tailLen = Math.min(fileSize, 22 + 65535);
  const tail = await readAt(fh, fileSize - tailLen, tailLen, path);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad('end of central directory not found (truncated file?)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdAbs = fileSize - tailLen + eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocdAbs < 20) throw bad('zip64 locator missing');
    const loc = await readAt(fh, eocdAbs - 20, 20, path);
    if (loc.readUInt32LE(0) !== ZIP64_LOCATOR_SIG) throw bad('zip64 locator missing');
    const z64Off = u64(loc, 8, path);
    if (z64Off + 56 > fileSize) throw bad('zip64 end record out of bounds');
    const z64 = await readAt(fh, z64Off, 56, path);
    if (z64.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw bad('zip64 end record signature wrong');
    count = u64(z64, 32, path);
    cdSize = u64(z64, 40, path);
    cdOffset = u64(z64, 48, path);
  }
  if (count > MAX_ENTRIES) throw new UnsafeFileError(`${path}: zip declares ${count} entries, refusing`);
  if (cdSize > MAX_CENTRAL_DIR_BYTES)
    throw new UnsafeFileError(`${path}: zip central directory of ${cdSize} bytes, refusing`);
  if (cdOffset + cdSize > fileSize) throw bad('central directory out of bounds (truncated file?)');
  if (count * 46 > cdSize) throw bad(`central directory too small for ${count} entries`);
  const cd = await readAt(fh, cdOffset, cdSize, path);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CDH_SIG)
      throw bad(`central directory entry ${i} is damaged`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let headerOffset = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) throw bad(`central directory entry ${i} is damaged`);
    const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
    // zip64 extended information: only the fields whose 32-bit slot is saturated, in this order.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = cd.readUInt16LE(q);
      const len = cd.readUInt16LE(q + 2);
      if (q + 4 + len > extraEnd) throw bad(`extra field of "${name}" is damaged`);
      if (id === 0x0001) {
        let r = q + 4;
        const take = () => {
          if (r + 8 > q + 4 + len) throw bad(`zip64 field of "${name}" is short`);
          const v = u64(cd, r, path);
          r += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (headerOffset === 0xffffffff) headerOffset = take();
      }
      q += 4 + len;
    }
    entries.push({ name, method, compressedSize, size, headerOffset });
    p = end;
  }
  return { entries, centralDirOffset: cdOffset, fileSize };
}

/** Absolute offset of a stored entry's bytes, checked against its local header and the file. */
export async function entryDataOffset(
  fh: FileHandle,
  path: string,
  dir: ZipDirectory,
  e: ZipEntry,
): Promise<number> {
  if (e.headerOffset + 30 > dir.fileSize)
    throw new UserError(`${path}: zip entry "${e.name}" is out of bounds`);
  const h = await readAt(fh, e.headerOffset, 30, path);
  if (h.readUInt32LE(0) !== LFH_SIG)
    throw new UserError(`${path}: zip entry "${e.name}" has a damaged local header`);
  const nameLen = h.readUInt16LE(26);
  const extraLen = h.readUInt16LE(28);
  const start = e.headerOffset + 30 + nameLen + extraLen;
  if (nameLen !== Buffer.byteLength(e.name) && nameLen !== e.name.length) {
    throw new UnsafeFileError(
      `${path}: zip entry "${e.name}" has a local header that disagrees with the directory`,
    );
  }
  if (start + e.size > dir.centralDirOffset) {
    throw new UserError(`${path}: zip entry "${e.name}" runs past the end of the data (truncated file?)`);
  }
  return start;
}
