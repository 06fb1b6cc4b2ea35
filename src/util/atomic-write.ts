/**
 * Whole-file replacement: the bytes go to `<path>.tmp-<pid>` and are renamed over `path`, so a
 * reader never sees half a file and a failed write leaves the old one (and no temp file) behind.
 */
import { readdirSync, rmSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The temporary name a writer in this process uses for `path` (removeTempOnSignal cleans it up). */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `<path>.tmp-<pid>` files left by writers of `path` that were killed (their process is
 * gone); a live writer's file is left alone. Best effort: an unreadable folder is not an error.
 * Returns the names removed.
 */
export function removeStaleTemps(path: string): string[] {
  const dir = dirname(path);
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    if (!/^\d+$/.test(rest)) continue;
    const pid = Number(rest);
    if (pid === process.pid || processIsAlive(pid)) continue;
    try {
      rmSync(join(dir, name), { force: true });
      removed.push(name);
    } catch {
      // not ours to remove after all (permissions): leave it
    }
  }
  return removed;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  removeStaleTemps(path);
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
