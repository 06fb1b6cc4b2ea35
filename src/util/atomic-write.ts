/**
 * Whole-file replacement: the bytes go to `<path>.tmp-<pid>` and are renamed over `path`, so a
 * reader never sees half a file and a failed write leaves the old one (and no temp file) behind.
 */
import { rename, rm, writeFile } from 'node:fs/promises';

/** The temporary name a writer in this process uses for `path` (removeTempOnSignal cleans it up). */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
