/**
 * Loaded models shared by the tests of one file. Loading a checkpoint builds its graphs and opens
 * onnxruntime sessions (seconds each, most of an engine test's time), so tests that only need "the
 * tiny checkpoint with these options" ask here: the first asks loads it, later ones reuse it and its
 * sessions. Vitest runs every test file in its own worker process, so "per file" is "per worker".
 * Only for tests whose assertions do not depend on a fresh load; release them with `releaseAll`
 * in afterAll.
 */
export interface SharedModels<M extends { release(): Promise<void> }> {
  /** The model loaded for `key` (any JSON-able description of checkpoint + options), loading it once. */
  get(key: unknown, load: () => Promise<M>): Promise<M>;
  releaseAll(): Promise<void>;
}

export function sharedModels<M extends { release(): Promise<void> }>(): SharedModels<M> {
  const loaded = new Map<string, Promise<M>>();
  return {
    get(key, load) {
      const k = JSON.stringify(key);
      let m = loaded.get(k);
      if (!m) {
        m = load();
        loaded.set(k, m);
        // A failed load is not kept: the next test asks again and sees its own error.
        m.catch(() => loaded.delete(k));
      }
      return m;
    },
    async releaseAll() {
      const all = [...loaded.values()];
      loaded.clear();
      for (const m of all) await (await m.catch(() => undefined))?.release();
    },
  };
}
