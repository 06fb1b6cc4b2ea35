/**
 * `.safetensors`: u64-LE header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`,
 * then raw little-endian tensor bytes (offsets relative to the end of the header).
 * Reading keeps one file handle and reads each tensor with a positioned read; the file is
 * never loaded whole. Writing goes to a temporary file renamed into place at the end.
 */
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { removeStaleTemps, tempPathFor } from '../util/atomic-write.js';
import { UserError } from '../util/errors.js';
import { toFloat32 } from './dtype.js';
import {
  DTYPE_BYTES,
  numel,
  type DType,
  type FileLocation,
  type Tensor,
  type TensorInfo,
  type TensorSource,
} from './tensor.js';

/** A sane upper bound for the JSON header (the reference library uses the same 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry extends TensorInfo {
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  length: number;
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** 8 + header length: where tensor data starts. */
  dataStart: number;
  metadata: Record<string, string>;
  /** Entries in file order (ascending offset). */
  tensors: SafetensorsEntry[];
}

const KNOWN_DTYPES = new Set<string>(Object.keys(DTYPE_BYTES));

function bad(path: string, why: string): UserError {
  return new UserError(
    `${path}: not a valid .safetensors file: ${why}. Download it again, or re-save it with the safetensors library`,
  );
}

/** Parse and validate a header from its raw JSON bytes; exported for tests and for in-memory use. */
export function parseSafetensorsHeader(path: string, json: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + json.byteLength;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    throw bad(path, `header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw bad(path, 'header is not a JSON object');
  }
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw bad(path, '__metadata__ is not an object');
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(path, `__metadata__ value of "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw bad(path, `entry "${name}" is not an object`);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !KNOWN_DTYPES.has(dtype)) {
      throw bad(path, `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(path, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw bad(path, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw bad(
        path,
        `tensor "${name}" ends at byte ${end} of the data but the data is ${dataSize} bytes (truncated file?)`,
      );
    }
    const n = numel(shape as number[]);
    const expected = n * DTYPE_BYTES[dtype as DType];
    if (!Number.isSafeInteger(expected) || expected !== end - begin) {
      throw bad(
        path,
        `tensor "${name}" is ${dtype}${JSON.stringify(shape)} (${expected} bytes) but its data_offsets span ${end - begin} bytes`,
      );
    }
    tensors.push({
      name,
      dtype: dtype as DType,
      shape: [...(shape as number[])],
      offset: dataStart + begin,
      length: end - begin,
    });
  }
  // As the reference library validates: in offset order each tensor starts exactly where the
  // previous one ends and the last one ends the file. No overlaps, no gaps, no trailing bytes
  // (bytes no tensor owns could hide anything, and safetensors itself refuses such files).
  tensors.sort((a, b) => a.offset - b.offset || a.length - b.length);
  let pos = dataStart;
  let prev: string | undefined;
  for (const t of tensors) {
    if (t.offset < pos) throw bad(path, `tensors "${prev}" and "${t.name}" overlap`);
    if (t.offset > pos) {
      throw bad(
        path,
        `bytes ${pos - dataStart}..${t.offset - dataStart} of the data before tensor "${t.name}" belong to no tensor (a gap; the safetensors library refuses such files)`,
      );
    }
    pos = t.offset + t.length;
    prev = t.name;
  }
  if (pos !== fileSize) {
    throw bad(
      path,
      `${fileSize - pos} bytes after the last tensor belong to no tensor (the safetensors library refuses such files)`,
    );
  }
  return { path, fileSize, dataStart, metadata, tensors };
}

async function readHeaderFrom(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const st = await fh.stat();
  if (!st.isFile()) throw new UserError(`${path} is not a file; give the path of a .safetensors file`);
  const { size } = st;
  if (size < 8) throw bad(path, `file is ${size} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  await readExactly(fh, lenBuf, 0, path);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw bad(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2n) throw bad(path, `header length ${n} is too small for a JSON object`);
  if (8n + n > BigInt(size)) throw bad(path, `header length ${n} runs past the end of the ${size}-byte file`);
  const json = Buffer.alloc(Number(n));
  await readExactly(fh, json, 8, path);
  return parseSafetensorsHeader(path, json, size);
}

async function readExactly(fh: FileHandle, buf: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesRead } = await fh.read(buf, done, buf.byteLength - done, position + done);
    if (bytesRead === 0) throw new UserError(`${path}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Read just the header (names, dtypes, shapes, offsets, metadata): cheap for any file size. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(path);
  try {
    return await readHeaderFrom(fh, path);
  } finally {
    await fh.close();
  }
}

async function openForRead(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    throw new UserError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

class SafetensorsSource implements TensorSource {
  readonly format = 'safetensors' as const;
  private readonly byName: Map<string, SafetensorsEntry>;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly header: SafetensorsHeader,
  ) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  keys(): string[] {
    return [...this.byName.keys()].sort();
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo | undefined {
    const e = this.byName.get(name);
    return e && { name: e.name, dtype: e.dtype, shape: [...e.shape] };
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`tensor "${name}" is not in ${this.path}`);
    return e;
  }

  async read(name: string): Promise<Tensor> {
    const e = this.entry(name);
    const data = new Uint8Array(e.length);
    await readExactly(this.fh, data, e.offset, this.path);
    return { dtype: e.dtype, shape: [...e.shape], data };
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return toFloat32(await this.read(name));
  }

  location(name: string): FileLocation | undefined {
    const e = this.byName.get(name);
    return e && { path: this.path, offset: e.offset, length: e.length };
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/** Open a `.safetensors` file: header validated now, tensors read on demand. */
export async function openSafetensors(path: string): Promise<TensorSource & { header: SafetensorsHeader }> {
  const fh = await openForRead(path);
  try {
    const header = await readHeaderFrom(fh, path);
    return new SafetensorsSource(path, fh, header);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

export interface WriteSafetensorsOptions {
  /**
   * Every tensor to be written, known before its data: the header is written first and each
   * tensor then lands at its offset as it arrives (any order), so nothing is held in memory.
   * Without infos the entries are collected in memory first.
   */
  infos?: TensorInfo[];
}

function encodeHeader(infos: TensorInfo[], metadata: Record<string, string> | undefined) {
  const sorted = [...infos].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors metadata value of "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const offsets = new Map<string, { offset: number; info: TensorInfo }>();
  let pos = 0;
  for (const info of sorted) {
    if (info.name === '__metadata__') throw new Error('a tensor cannot be named __metadata__');
    if (offsets.has(info.name)) throw new Error(`tensor "${info.name}" is listed twice`);
    const length = numel(info.shape) * DTYPE_BYTES[info.dtype];
    header[info.name] = { dtype: info.dtype, shape: info.shape, data_offsets: [pos, pos + length] };
    offsets.set(info.name, { offset: pos, info });
    pos += length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) json = Buffer.concat([json, Buffer.alloc(padded - json.byteLength, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.byteLength));
  return { bytes: Buffer.concat([prefix, json]), offsets, dataSize: pos };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Write tensors as `.safetensors` (tensors in sorted-name order, header padded with spaces to a
 * multiple of 8, like the reference writer). The output appears only when complete: data goes to
 * `<path>.tmp-<pid>`, which is renamed over `path` at the end and removed on failure.
 */
export async function writeSafetensors(
  path: string,
  entries: AsyncIterable<[string, Tensor]> | Iterable<[string, Tensor]>,
  metadata?: Record<string, string>,
  opts: WriteSafetensorsOptions = {},
): Promise<void> {
  let infos = opts.infos;
  let buffered: Map<string, Tensor> | undefined;
  if (!infos) {
    buffered = new Map();
    for await (const [name, t] of entries) {
      if (buffered.has(name)) throw new Error(`tensor "${name}" is given twice`);
      buffered.set(name, t);
    }
    infos = [...buffered].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  }
  const { bytes, offsets, dataSize } = encodeHeader(infos, metadata);
  removeStaleTemps(path);
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'w').catch((e: unknown) => {
    throw writeError(path, e);
  });
  let ok = false;
  try {
    await fh.write(bytes, 0, bytes.byteLength, 0);
    const written = new Set<string>();
    const put = async (name: string, t: Tensor) => {
      const slot = offsets.get(name);
      if (!slot) throw new Error(`tensor "${name}" was not announced in the infos given to writeSafetensors`);
      if (written.has(name)) throw new Error(`tensor "${name}" is given twice`);
      if (t.dtype !== slot.info.dtype || !sameShape(t.shape, slot.info.shape)) {
        throw new Error(
          `tensor "${name}" is ${t.dtype}${JSON.stringify(t.shape)} but was announced as ${slot.info.dtype}${JSON.stringify(slot.info.shape)}`,
        );
      }
      const length = numel(t.shape) * DTYPE_BYTES[t.dtype];
      if (t.data.byteLength !== length) {
        throw new Error(`tensor "${name}" has ${t.data.byteLength} bytes of data, expected ${length}`);
      }
      let done = 0;
      while (done < length) {
        const { bytesWritten } = await fh.write(
          t.data,
          done,
          length - done,
          bytes.byteLength + slot.offset + done,
        );
        done += bytesWritten;
      }
      written.add(name);
    };
    if (buffered) {
      for (const [name, t] of buffered) await put(name, t);
    } else {
      for await (const [name, t] of entries) await put(name, t);
    }
    const missing = [...offsets.keys()].filter((n) => !written.has(n));
    if (missing.length > 0) {
      throw new Error(
        `writeSafetensors: ${missing.length} announced tensor(s) never arrived (first: "${missing[0]}")`,
      );
    }
    await fh.truncate(bytes.byteLength + dataSize);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
    ok = true;
  } catch (e) {
    throw writeError(path, e);
  } finally {
    await fh.close().catch(() => undefined);
    if (!ok) await rm(tmp, { force: true });
  }
}

/** A file-system failure while writing (disk full, no permission, a folder in the way) as a UserError. */
function writeError(path: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return e;
  const hint =
    code === 'ENOSPC'
      ? 'the disk is full; free some space'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
        ? 'no permission to write there; choose another folder'
        : code === 'EISDIR'
          ? 'a folder has that name; choose a file name'
          : code === 'ENOENT'
            ? 'the folder does not exist; create it first'
            : 'check the output path';
  return new UserError(`cannot write ${path}: ${code} (${hint})`);
}
