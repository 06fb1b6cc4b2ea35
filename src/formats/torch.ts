/**
 * PyTorch `torch.save` files (.ckpt / .pt / .pth / .bin), read without Python and without
 * running the pickle's code:
 *  - zip format (torch ≥ 1.6): `<prefix>/data.pkl` + one stored entry per storage, read in place;
 *  - legacy format: five pickles back to back (magic, protocol, sys_info, object, storage keys),
 *    then each storage as u64-LE element count + raw bytes.
 * Tensors stay lazy (a file handle and a byte range) until asked for, so one tensor of a 4 GB
 * checkpoint costs that tensor's bytes, not the file's.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { UnsafeFileError, UserError } from '../util/errors.js';
import { toFloat32 } from './dtype.js';
import { isInternal, isPlainObject, markInternal, PickleTruncatedError, unpickle } from './pickle.js';
import {
  DTYPE_BYTES,
  numel,
  type FileLocation,
  type Tensor,
  type TensorInfo,
  type TensorSource,
} from './tensor.js';
import { LazyTensor, type StorageRef, torchGlobalResolver } from './torch-globals.js';
import { entryDataOffset, readZipDirectory, type ZipEntry } from './zip.js';

export { LazyTensor } from './torch-globals.js';

/** A data.pkl (or legacy object pickle) larger than this is not a model's. */
const MAX_PICKLE_BYTES = 512 * 1024 * 1024;
/** Broadcast views (stride 0) may materialise larger than their storage, up to this. */
const MAX_EXPANDED_BYTES = 64 * 1024 * 1024;
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
const MAX_DEPTH = 200;

/** What `torch.save` wrote, with tensors still on disk. */
export interface TorchFile {
  path: string;
  kind: 'zip' | 'legacy' | 'pickle';
  /** The unpickled object; tensors are LazyTensor leaves. */
  root: unknown;
  fh: FileHandle;
}

async function readAt(fh: FileHandle, position: number, length: number, path: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new UserError(`${path}: unexpected end of file (truncated?)`);
    done += bytesRead;
  }
  return buf;
}

/** Entry names torch writes (A1111's check plus what newer torch adds), all under one folder. */
const ALLOWED_ENTRY =
  /^([^/]+)\/(data\.pkl|data\/\d+|version|byteorder|\.data\/[A-Za-z0-9_.]+|\.format_version|\.storage_alignment)$/;

function storageDType(cls: unknown, source: string) {
  const d = isInternal(cls) ? (cls as { storageDType?: keyof typeof DTYPE_BYTES }).storageDType : undefined;
  if (!d) throw new UserError(`${source}: storage of an unsupported type ${describe(cls)}`);
  return d;
}

function describe(x: unknown): string {
  if (typeof x === 'object' && x !== null && 'module' in x && 'name' in x) {
    return `${(x as { module: string }).module}.${(x as { name: string }).name}`;
  }
  return typeof x;
}

async function parseZip(path: string, fh: FileHandle): Promise<TorchFile> {
  const dir = await readZipDirectory(fh, path);
  let prefix: string | undefined;
  const byName = new Map<string, ZipEntry>();
  for (const e of dir.entries) {
    const m = ALLOWED_ENTRY.exec(e.name);
    if (!m || e.name.split('/').some((c) => c === '..' || c === '.') || e.name.includes('\\')) {
      throw new UnsafeFileError(
        `${path}: refused: unexpected entry "${e.name}" inside the checkpoint (not written by torch.save)`,
      );
    }
    if (prefix !== undefined && m[1] !== prefix) {
      throw new UnsafeFileError(
        `${path}: refused: entries under two different folders ("${prefix}", "${m[1]}")`,
      );
    }
    prefix = m[1];
    if (e.method !== 0 || e.compressedSize !== e.size) {
      throw new UnsafeFileError(
        `${path}: refused: entry "${e.name}" is compressed; torch.save only writes stored entries`,
      );
    }
    if (byName.has(e.name)) throw new UnsafeFileError(`${path}: refused: entry "${e.name}" appears twice`);
    byName.set(e.name, e);
  }
  const pkl = byName.get(`${prefix}/data.pkl`);
  if (!pkl) throw new UserError(`${path}: data.pkl not found; not a PyTorch checkpoint`);
  if (pkl.size > MAX_PICKLE_BYTES)
    throw new UnsafeFileError(`${path}: data.pkl is ${pkl.size} bytes, over the limit`);
  const byteorder = byName.get(`${prefix}/byteorder`);
  if (byteorder) {
    if (byteorder.size > 16) throw new UserError(`${path}: byteorder entry is damaged`);
    const bo = new TextDecoder().decode(
      await readAt(fh, await entryDataOffset(fh, path, dir, byteorder), byteorder.size, path),
    );
    if (bo.trim() !== 'little') throw new UserError(`${path}: big-endian checkpoints are not supported`);
  }
  const pklData = await readAt(fh, await entryDataOffset(fh, path, dir, pkl), pkl.size, path);
  // Resolve storages first (bounds and local headers checked), then unpickle synchronously.
  const storageOffsets = new Map<string, { offset: number; size: number }>();
  for (const e of byName.values()) {
    const m = /\/data\/(\d+)$/.exec(e.name);
    if (m) storageOffsets.set(m[1]!, { offset: await entryDataOffset(fh, path, dir, e), size: e.size });
  }
  const storages = new Map<string, StorageRef>();
  const source = `${path} (${prefix}/data.pkl)`;
  const root = unpickle(pklData, {
    source,
    findGlobal: torchGlobalResolver({ source, maxExpandedBytes: MAX_EXPANDED_BYTES }),
    persistentLoad: (pid) => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
        throw new UserError(`${source}: unsupported persistent id`);
      }
      const [, cls, key, , count] = pid;
      const k = String(key);
      const dtype = storageDType(cls, source);
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
        throw new UserError(`${source}: storage ${k} has an invalid size`);
      }
      const known = storages.get(k);
      if (known) {
        if (known.dtype !== dtype || known.numel !== count)
          throw new UnsafeFileError(`${source}: storage ${k} is declared twice differently`);
        return known;
      }
      const entry = storageOffsets.get(k);
      if (!entry) throw new UserError(`${source}: storage ${k} has no data entry`);
      if (count * DTYPE_BYTES[dtype] !== entry.size) {
        throw new UnsafeFileError(
          `${source}: storage ${k} declares ${count} ${dtype} elements (${count * DTYPE_BYTES[dtype]} bytes) but its entry holds ${entry.size} bytes`,
        );
      }
      const ref: StorageRef = markInternal({
        kind: 'storage',
        key: k,
        dtype,
        numel: count,
        fileOffset: entry.offset,
      });
      storages.set(k, ref);
      return ref;
    },
  }).value;
  return { path, kind: 'zip', root, fh };
}

/**
 * Run the pickles at the start of a legacy file. The buffer grows until they fit (their
 * total size is not written anywhere), up to MAX_PICKLE_BYTES.
 */
async function parseLegacy(path: string, fh: FileHandle, fileSize: number): Promise<TorchFile> {
  let chunk = Math.min(fileSize, 4 * 1024 * 1024);
  while (true) {
    const buf = await readAt(fh, 0, chunk, path);
    try {
      return await parseLegacyFrom(path, fh, fileSize, buf);
    } catch (e) {
      if (!(e instanceof PickleTruncatedError) || chunk >= fileSize) throw e;
      if (chunk >= MAX_PICKLE_BYTES)
        throw new UnsafeFileError(`${path}: pickle larger than ${MAX_PICKLE_BYTES} bytes, refusing`);
      chunk = Math.min(fileSize, chunk * 4, MAX_PICKLE_BYTES);
    }
  }
}

async function parseLegacyFrom(
  path: string,
  fh: FileHandle,
  fileSize: number,
  buf: Uint8Array,
): Promise<TorchFile> {
  const findGlobal = torchGlobalResolver({ source: path, maxExpandedBytes: MAX_EXPANDED_BYTES });
  const first = unpickle(buf, { source: path, findGlobal });
  if (first.value !== LEGACY_MAGIC && first.value !== Number(LEGACY_MAGIC)) {
    // Not a torch file: a bare pickle (already vetted by the restricted unpickler).
    return { path, kind: 'pickle', root: first.value, fh };
  }
  const proto = unpickle(buf, { source: path, findGlobal }, first.end);
  if (proto.value !== LEGACY_PROTOCOL)
    throw new UserError(`${path}: unsupported legacy torch protocol ${String(proto.value)}`);
  const sysInfo = unpickle(buf, { source: path, findGlobal }, proto.end);
  if (isPlainObject(sysInfo.value) && sysInfo.value.little_endian === false) {
    throw new UserError(`${path}: big-endian checkpoints are not supported`);
  }
  const storages = new Map<string, StorageRef & { views: StorageRef[] }>();
  const main = unpickle(
    buf,
    {
      source: path,
      findGlobal,
      persistentLoad: (pid) => {
        if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5)
          throw new UserError(`${path}: unsupported persistent id`);
        const [, cls, key, , count, view] = pid;
        const k = String(key);
        const dtype = storageDType(cls, path);
        if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
          throw new UserError(`${path}: storage ${k} has an invalid size`);
        }
        let root = storages.get(k);
        if (!root) {
          root = markInternal({
            kind: 'storage' as const,
            key: k,
            dtype,
            numel: count,
            fileOffset: -1,
            views: [],
          });
          storages.set(k, root);
        } else if (root.dtype !== dtype || root.numel !== count) {
          throw new UnsafeFileError(`${path}: storage ${k} is declared twice differently`);
        }
        if (view === null || view === undefined) return root;
        // Old storage views: (view_key, element offset, element count) inside the root storage.
        const [, off, n] = Array.isArray(view) ? view : [];
        if (typeof off !== 'number' || typeof n !== 'number' || off < 0 || n < 0 || off + n > count) {
          throw new UnsafeFileError(`${path}: storage view outside storage ${k}`);
        }
        const v: StorageRef & { viewOffset: number } = markInternal({
          kind: 'storage' as const,
          key: k,
          dtype,
          numel: n,
          fileOffset: -1,
          viewOffset: off,
        });
        root.views.push(v);
        return v;
      },
    },
    sysInfo.end,
  );
  const keys = unpickle(buf, { source: path, findGlobal }, main.end);
  if (!Array.isArray(keys.value)) throw new UserError(`${path}: legacy storage key list is missing`);
  let pos = keys.end;
  const header = new Uint8Array(8);
  for (const key of keys.value) {
    const ref = storages.get(String(key));
    if (!ref) throw new UserError(`${path}: storage ${String(key)} is listed but never used`);
    if (pos + 8 > fileSize) throw new UserError(`${path}: storage ${ref.key} is missing (truncated file?)`);
    await fh.read(header, 0, 8, pos);
    const count = new DataView(header.buffer).getBigUint64(0, true);
    if (count !== BigInt(ref.numel)) {
      throw new UnsafeFileError(
        `${path}: storage ${ref.key} declares ${ref.numel} elements but the file stores ${count}`,
      );
    }
    const start = pos + 8;
    pos = start + ref.numel * DTYPE_BYTES[ref.dtype];
    if (pos > fileSize)
      throw new UserError(`${path}: storage ${ref.key} runs past the end of the file (truncated?)`);
    ref.fileOffset = start;
    for (const v of ref.views)
      v.fileOffset = start + (v as unknown as { viewOffset: number }).viewOffset * DTYPE_BYTES[v.dtype];
  }
  for (const ref of storages.values()) {
    if (ref.fileOffset < 0) throw new UserError(`${path}: storage ${ref.key} has no data`);
  }
  return { path, kind: 'legacy', root: main.value, fh };
}

/** Parse a torch file, leaving tensors on disk. The caller closes `fh`. */
export async function parseTorchFile(path: string): Promise<TorchFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new UserError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UserError(`${path} is not a file; give the path of a checkpoint file`);
    const { size } = st;
    if (size < 4) throw new UserError(`${path}: file is too short to be a checkpoint`);
    const magic = await readAt(fh, 0, 4, path);
    if (magic[0] === 0x50 && magic[1] === 0x4b && magic[2] === 0x03 && magic[3] === 0x04)
      return await parseZip(path, fh);
    if (
      magic[0] === 0x80 ||
      magic[0] === 0x28 ||
      magic[0] === 0x63 ||
      magic[0] === 0x7d ||
      magic[0] === 0x5d
    ) {
      return await parseLegacy(path, fh, size);
    }
    throw new UserError(`${path}: not a PyTorch checkpoint (neither a zip nor a pickle)`);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

function isContiguous(t: LazyTensor): boolean {
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== expected) return false;
    expected *= t.shape[i]!;
  }
  return true;
}

/** The tensor's bytes as one contiguous file range, when it is stored that way. */
export function lazyLocation(path: string, t: LazyTensor): FileLocation | undefined {
  if (!isContiguous(t)) return undefined;
  const eb = DTYPE_BYTES[t.dtype];
  return { path, offset: t.storage.fileOffset + t.storageOffset * eb, length: numel(t.shape) * eb };
}

/** Read one lazy tensor into memory as a contiguous row-major Tensor. */
export async function readLazyTensor(fh: FileHandle, path: string, t: LazyTensor): Promise<Tensor> {
  const n = numel(t.shape);
  const eb = DTYPE_BYTES[t.dtype];
  if (n === 0) return { dtype: t.dtype, shape: [...t.shape], data: new Uint8Array(0) };
  const loc = lazyLocation(path, t);
  if (loc)
    return { dtype: t.dtype, shape: [...t.shape], data: await readAt(fh, loc.offset, loc.length, path) };
  // Strided view: read the span it touches (within the storage, checked at parse time), then gather.
  let maxIndex = 0;
  for (let i = 0; i < t.shape.length; i++) maxIndex += (t.shape[i]! - 1) * t.stride[i]!;
  const span = await readAt(fh, t.storage.fileOffset + t.storageOffset * eb, (maxIndex + 1) * eb, path);
  const out = new Uint8Array(n * eb);
  const idx = new Array<number>(t.shape.length).fill(0);
  let src = 0;
  for (let k = 0; k < n; k++) {
    out.set(span.subarray(src * eb, src * eb + eb), k * eb);
    for (let d = t.shape.length - 1; d >= 0; d--) {
      idx[d]!++;
      src += t.stride[d]!;
      if (idx[d]! < t.shape[d]!) break;
      src -= idx[d]! * t.stride[d]!;
      idx[d] = 0;
    }
  }
  return { dtype: t.dtype, shape: [...t.shape], data: out };
}

/**
 * Read a torch file into a plain value tree: dicts (OrderedDict too) as objects, lists and
 * tuples as arrays, tensors as in-memory `Tensor`s. Meant for small files (embeddings,
 * hypernetworks); use `openCheckpoint` for models.
 */
export async function readTorchFile(path: string): Promise<unknown> {
  const file = await parseTorchFile(path);
  try {
    const { size } = await file.fh.stat();
    let budget = size + MAX_EXPANDED_BYTES;
    const seen = new Map<unknown, unknown>();
    const walk = async (v: unknown, depth: number): Promise<unknown> => {
      if (depth > MAX_DEPTH) throw new UserError(`${path}: object nesting deeper than ${MAX_DEPTH}`);
      if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return v;
      if (seen.has(v)) return seen.get(v);
      if (v instanceof LazyTensor) {
        budget -= numel(v.shape) * DTYPE_BYTES[v.dtype];
        if (budget < 0)
          throw new UnsafeFileError(`${path}: tensors expand to more bytes than the file holds, refusing`);
        const t = await readLazyTensor(file.fh, path, v);
        seen.set(v, t);
        return t;
      }
      if (Array.isArray(v)) {
        const out: unknown[] = [];
        seen.set(v, out);
        for (const x of v) out.push(await walk(x, depth + 1));
        return out;
      }
      const out: Record<string, unknown> = {};
      seen.set(v, out);
      for (const [k, x] of Object.entries(v)) {
        Object.defineProperty(out, k, {
          value: await walk(x, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    };
    return await walk(file.root, 0);
  } finally {
    await file.fh.close();
  }
}

/** Every tensor in a value tree, named by its `.`-joined path (list indices as components). */
export function flattenTensors(root: unknown, source: string): Map<string, LazyTensor> {
  const out = new Map<string, LazyTensor>();
  const onPath = new Set<unknown>();
  const walk = (v: unknown, prefix: string, depth: number) => {
    if (v instanceof LazyTensor) {
      out.set(prefix, v);
      return;
    }
    if (typeof v !== 'object' || v === null || v instanceof Uint8Array || onPath.has(v)) return;
    if (depth > MAX_DEPTH) throw new UserError(`${source}: object nesting deeper than ${MAX_DEPTH}`);
    onPath.add(v);
    const entries: [string, unknown][] = Array.isArray(v)
      ? v.map((x, i) => [String(i), x])
      : Object.entries(v);
    for (const [k, x] of entries) walk(x, prefix ? `${prefix}.${k}` : k, depth + 1);
    onPath.delete(v);
  };
  walk(root, '', 0);
  return out;
}

class CheckpointSource implements TensorSource {
  readonly format = 'ckpt' as const;
  readonly metadata: Record<string, string> = {};

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly tensors: Map<string, LazyTensor>,
  ) {}

  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name);
    return t && { name, dtype: t.dtype, shape: [...t.shape] };
  }

  private lazy(name: string): LazyTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`tensor "${name}" is not in ${this.path}`);
    return t;
  }

  read(name: string): Promise<Tensor> {
    return readLazyTensor(this.fh, this.path, this.lazy(name));
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return toFloat32(await this.read(name));
  }

  location(name: string): FileLocation | undefined {
    const t = this.tensors.get(name);
    return t && lazyLocation(this.path, t);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/**
 * Open a `.ckpt`/`.pt`/`.bin` as a TensorSource. As A1111 does, a top-level `state_dict` is
 * unwrapped (other top-level entries such as `callbacks` are dropped); nested dicts are flattened
 * with `.`. (A1111's key renames are applied by `openModel`, for every format.)
 */
export async function openCheckpoint(path: string): Promise<TensorSource> {
  const file = await parseTorchFile(path);
  try {
    let root = file.root;
    if (isPlainObject(root) && isPlainObject(root.state_dict)) root = root.state_dict;
    const flat = flattenTensors(root, path);
    if (flat.size === 0 && file.kind === 'pickle')
      throw new UserError(`${path}: a pickle with no tensors is not a checkpoint`);
    return new CheckpointSource(path, file.fh, flat);
  } catch (e) {
    await file.fh.close();
    throw e;
  }
}
