/**
 * One entry point for every model file: `openModel` looks at the content (magic bytes), not
 * only the extension, and returns a TensorSource with single-file (ldm) tensor names.
 */
import { open, stat } from 'node:fs/promises';
import { UserError } from '../util/errors.js';
import { openSafetensors } from './safetensors.js';
import { openCheckpoint } from './torch.js';
import { openDiffusersFolder } from './diffusers.js';
import { withA1111Names } from './key-renames.js';
import type { TensorSource } from './tensor.js';

export { MemoryTensorSource } from './memory.js';

export type ModelFileKind = 'safetensors' | 'torch-zip' | 'torch-legacy' | 'pickle' | 'diffusers' | 'unknown';

/** What kind of file this is, from its first bytes (or, for a folder, its layout). */
export async function sniffModelFile(path: string): Promise<ModelFileKind> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new UserError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (st.isDirectory()) return 'diffusers';
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await fh.read(head, 0, 16, 0);
    const b = head.subarray(0, bytesRead);
    if (b.length >= 4 && b.readUInt32LE(0) === 0x04034b50) return 'torch-zip';
    // Legacy torch.save starts with a pickled magic number: PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c.
    if (b.length >= 4 && b[0] === 0x80 && b[2] === 0x8a && b[3] === 0x0a) return 'torch-legacy';
    // safetensors: u64 header length then '{'.
    if (b.length >= 9 && b[8] === 0x7b && b.readBigUInt64LE(0) < BigInt(st.size)) return 'safetensors';
    // Any other pickle (protocol 2+ header, or protocol 0/1 starting with a common opcode).
    if (b.length >= 2 && ((b[0] === 0x80 && b[1]! <= 5) || [0x28, 0x63, 0x7d, 0x5d].includes(b[0]!)))
      return 'pickle';
    return 'unknown';
  } finally {
    await fh.close();
  }
}

/**
 * Open a model file or diffusers folder as a TensorSource (names in single-file ldm form, with
 * A1111's load-time key renames applied whatever the format: an old-CLIP-named `.safetensors`
 * reads like the same `.ckpt`).
 */
export async function openModel(path: string): Promise<TensorSource> {
  return withA1111Names(await openByContent(path));
}

async function openByContent(path: string): Promise<TensorSource> {
  const kind = await sniffModelFile(path);
  switch (kind) {
    case 'safetensors':
      return openSafetensors(path);
    case 'torch-zip':
    case 'torch-legacy':
    case 'pickle':
      return openCheckpoint(path);
    case 'diffusers':
      return openDiffusersFolder(path);
    case 'unknown':
      throw new UserError(
        `${path}: not a recognised model file (expected .safetensors, a PyTorch .ckpt/.pt/.bin or a diffusers folder)`,
      );
  }
}
