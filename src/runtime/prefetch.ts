/**
 * Reading a weights file through once, off the main thread, so its pages are in the OS page cache
 * before onnxruntime touches them through its memory map.
 *
 * onnxruntime maps a saved model's initializers and reads each page on first use, inside the
 * first run: with a cold page cache the 2.6 GB UNet weights file put the first 512² step 2.1–2.3 s
 * over the steady step, 0.4–0.6 s with this prefetch (docs/performance.md). Session creation and
 * runs block the JavaScript thread, so the read runs in a worker thread: started before the
 * session is created it overlaps with it, costs no measurable wall time when the file is already
 * cached and streams at the disk's rate when it is not.
 */
import { Worker } from 'node:worker_threads';

// CommonJS source for an eval'd worker: read the file in 8 MiB chunks into one reused buffer.
const READER = `
const { openSync, readSync, closeSync } = require('node:fs');
const { workerData } = require('node:worker_threads');
const fd = openSync(workerData, 'r');
try {
  const buf = Buffer.allocUnsafe(8 << 20);
  while (readSync(fd, buf, 0, buf.length, null) > 0);
} finally {
  closeSync(fd);
}
`;

/**
 * Read `path` to its end in a worker thread. Resolves when done; a file that cannot be read only
 * means nothing was prefetched (the caller goes on either way), so this never rejects.
 */
export function prefetchFile(path: string): Promise<void> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(READER, { eval: true, workerData: path });
    } catch {
      resolve();
      return;
    }
    worker.once('error', () => resolve());
    worker.once('exit', () => resolve());
  });
}
