/**
 * ModelLibrary without an engine: which file a name finds, and the loaded-model cache (one load per
 * key, shared by concurrent jobs, idle models beyond `keep` unloaded, held ones never).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadedModel, LoadModelOptions } from '../../src/pipeline/model.js';
import { ModelLibrary, modelKey, type ModelSpec } from '../../src/pipeline/model-library.js';
import { hashFile } from '../../src/tools/hash.js';
import { UserError } from '../../src/util/errors.js';

let data: string;
let ckpts: string;
beforeAll(async () => {
  data = await mkdtemp(join(tmpdir(), 'sdlib-'));
  process.env.SDSTUDIO_CACHE = join(data, 'cache');
  ckpts = join(data, 'models', 'Stable-diffusion');
  await mkdir(join(ckpts, 'sub'), { recursive: true });
  await mkdir(join(data, 'models', 'VAE'), { recursive: true });
  await writeFile(join(ckpts, 'alpha.safetensors'), 'alpha');
  await writeFile(join(ckpts, 'Beta.ckpt'), 'beta');
  await writeFile(join(ckpts, 'sub', 'gamma.safetensors'), 'gamma');
  await writeFile(join(ckpts, 'alpha.vae.pt'), 'vae');
  await writeFile(join(data, 'models', 'VAE', 'mse.safetensors'), 'mse');
});

describe('ModelLibrary.findCheckpoint / findVae', () => {
  it('by file name, stem (any case), A1111 title, sub-folder path, hash once hashed; none = the first', async () => {
    const lib = new ModelLibrary({ dataDir: data });
    expect(await lib.findCheckpoint()).toBe(join(ckpts, 'Beta.ckpt'));
    expect(await lib.findCheckpoint('alpha')).toBe(join(ckpts, 'alpha.safetensors'));
    expect(await lib.findCheckpoint('beta.CKPT')).toBe(join(ckpts, 'Beta.ckpt'));
    expect(await lib.findCheckpoint('alpha.safetensors [0123456789]')).toBe(join(ckpts, 'alpha.safetensors'));
    expect(await lib.findCheckpoint('sub/gamma')).toBe(join(ckpts, 'sub', 'gamma.safetensors'));
    const { autov2, sha256 } = await hashFile(join(ckpts, 'sub', 'gamma.safetensors'));
    expect(await lib.findCheckpoint(autov2)).toBe(join(ckpts, 'sub', 'gamma.safetensors'));
    expect(await lib.findCheckpoint(sha256)).toBe(join(ckpts, 'sub', 'gamma.safetensors'));
    expect(await lib.findCheckpoint(`whatever [${autov2}]`)).toBe(join(ckpts, 'sub', 'gamma.safetensors'));
  });

  it('a missing path or name: exit code 4, says what to do, never "pass --model" for a path that was passed', async () => {
    const lib = new ModelLibrary({ dataDir: data });
    const e1 = (await lib
      .findCheckpoint('/path/to/v1-5-pruned-emaonly.safetensors')
      .catch((e) => e)) as UserError;
    expect(e1).toBeInstanceOf(UserError);
    expect(e1.exitCode).toBe(4);
    expect(e1.message).toContain('/path/to/v1-5-pruned-emaonly.safetensors does not exist');
    expect(e1.message).not.toContain('--model');
    const e2 = (await lib.findCheckpoint('delta').catch((e) => e)) as UserError;
    expect(e2.message).toContain('Beta.ckpt, alpha.safetensors, gamma.safetensors');
    expect(e2.message).not.toContain('--model');
    const empty = new ModelLibrary({ dataDir: join(data, 'nothing') });
    expect(((await empty.findCheckpoint().catch((e) => e)) as UserError).exitCode).toBe(4);
  });

  it('VAE: Automatic finds <checkpoint>.vae.*, a name the VAE folder, None none', () => {
    const lib = new ModelLibrary({ dataDir: data });
    const alpha = join(ckpts, 'alpha.safetensors');
    expect(lib.findVae('Automatic', alpha)).toBe(join(ckpts, 'alpha.vae.pt'));
    expect(lib.findVae('Automatic', join(ckpts, 'Beta.ckpt'))).toBeNull();
    expect(lib.findVae('mse', alpha)).toBe(join(data, 'models', 'VAE', 'mse.safetensors'));
    expect(lib.findVae('None', alpha)).toBeNull();
    expect(() => lib.findVae('nope', alpha)).toThrow(UserError);
  });
});

/** A loader that makes stand-in models and records loads and releases. */
function fakeLoader() {
  const log: string[] = [];
  const loader = async (o: LoadModelOptions): Promise<LoadedModel> => {
    const id = `${o.checkpoint}|${o.vaePath ?? '-'}|${o.unetPrecision}`;
    log.push(`load ${id}`);
    await new Promise((r) => setTimeout(r, 5));
    return {
      name: o.checkpoint,
      release: async () => {
        log.push(`release ${id}`);
      },
    } as unknown as LoadedModel;
  };
  return { log, loader };
}

const spec = (checkpoint: string, extra: Partial<ModelSpec> = {}): ModelSpec => ({
  checkpoint,
  vaePath: null,
  precision: 'fp32',
  ...extra,
});

describe('ModelLibrary cache', () => {
  it('one load per key, also for concurrent jobs; the key has checkpoint, VAE, precision, provider', async () => {
    const { log, loader } = fakeLoader();
    const lib = new ModelLibrary({ dataDir: data, loader, keep: 4 });
    const [a, b] = await Promise.all([lib.acquire(spec('a')), lib.acquire(spec('a'))]);
    expect(a.model).toBe(b.model);
    a.done();
    b.done();
    const c = await lib.acquire(spec('a'));
    expect(c.model).toBe(a.model);
    c.done();
    expect(log).toEqual(['load a|-|fp32']);
    const keys = new Set([
      modelKey(spec('a')),
      modelKey(spec('a', { vaePath: 'v' })),
      modelKey(spec('a', { precision: 'int8' })),
      modelKey(spec('a', { provider: 'cuda' })),
      modelKey(spec('a', { loras: [{ name: 'l', path: 'l', te: 1, unet: 1, dynDim: null }] })),
    ]);
    expect(keys.size).toBe(5);
    await lib.release();
    expect(log).toEqual(['load a|-|fp32', 'release a|-|fp32']);
  });

  it('keep 1: an idle model is unloaded before the next one loads; a held one stays until given back', async () => {
    const { log, loader } = fakeLoader();
    const lib = new ModelLibrary({ dataDir: data, loader });
    const a = await lib.acquire(spec('a'));
    a.done();
    const b = await lib.acquire(spec('b'));
    expect(log).toEqual(['load a|-|fp32', 'release a|-|fp32', 'load b|-|fp32']);
    // b is held: loading c (another job at the same time) must not unload it.
    const c = await lib.acquire(spec('c'));
    expect(log).not.toContain('release b|-|fp32');
    expect(
      lib
        .loaded()
        .map((s) => s.checkpoint)
        .sort(),
    ).toEqual(['b', 'c']);
    b.done();
    await new Promise((r) => setTimeout(r, 0));
    // Both idle now is over `keep`: the least recently used (b) goes, c stays.
    c.done();
    await new Promise((r) => setTimeout(r, 0));
    expect(lib.loaded().map((s) => s.checkpoint)).toEqual(['c']);
    expect(log).toContain('release b|-|fp32');
    await expect(lib.unload(spec('c'))).resolves.toBeUndefined();
    expect(lib.loaded()).toEqual([]);
    await lib.release();
    await expect(lib.acquire(spec('a'))).rejects.toThrow(/released/);
  });

  it('a failed load is not cached: the next job tries again', async () => {
    let fail = true;
    const lib = new ModelLibrary({
      dataDir: data,
      loader: async () => {
        if (fail) throw new UserError('broken file');
        return { release: async () => undefined } as unknown as LoadedModel;
      },
    });
    await expect(lib.acquire(spec('x'))).rejects.toThrow('broken file');
    fail = false;
    const l = await lib.acquire(spec('x'));
    l.done();
    await lib.release();
  });
});
