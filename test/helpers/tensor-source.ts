import { openModel } from '../../src/formats/open.js';
import type { TensorSource } from '../../src/formats/tensor.js';

/** Opens a model file, runs `f` on it and closes it whatever happens. */
export async function withSource<T>(path: string, f: (s: TensorSource) => Promise<T>): Promise<T> {
  const s = await openModel(path);
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}
