import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/formats/open.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { openCheckpoint, readTorchFile } from '../../src/formats/torch.js';
import { toFloat32 } from '../../src/formats/dtype.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { UnsafeFileError, UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { buildZip, bytesOf, str, tensorPickle, u64le, writeSparseZip64 } from './craft.js';
import { expectTensorMatches, sha256, stateDictJson, type GoldenTensorEntry } from './golden-tensors.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-torch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function isTensor(x: unknown): x is Tensor {
  return (
    typeof x === 'object' &&
    x !== null &&
    'dtype' in x &&
    'data' in x &&
    (x as Tensor).data instanceof Uint8Array
  );
}

function at(tree: unknown, dotted: string): unknown {
  let v = tree;
  for (const part of dotted.split('.')) v = (v as Record<string, unknown>)[part];
  return v;
}

async function errorOf(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a refusal, but the file loaded');
    },
    (e: Error) => e,
  );
}

const stateDictFiles = Object.entries(stateDictJson().files)
  .filter(([f]) => f.endsWith('.pt'))
  .map(([f]) => f);

describe('golden state dicts (.pt zip and legacy)', () => {
  for (const file of stateDictFiles) {
    it(`${file}: every entry of state_dict.json, exactly`, async () => {
      const tree = await readTorchFile(goldenPath('formats', file));
      const { entries } = stateDictJson();
      for (const [name, g] of Object.entries(entries)) {
        const v = at(tree, name);
        if (g.kind === 'tensor') {
          expect(isTensor(v), name).toBe(true);
          expectTensorMatches(name, v as Tensor, g as GoldenTensorEntry);
        } else {
          expect(v, name).toEqual((g as { value: unknown }).value);
        }
      }
    });

    it(`${file}: openCheckpoint equals the safetensors twin byte for byte`, async () => {
      const ck = await openCheckpoint(goldenPath('formats', file));
      const st = await openSafetensors(goldenPath('formats', 'state_dict.safetensors'));
      try {
        expect(ck.format).toBe('ckpt');
        expect(ck.keys()).toEqual(st.keys());
        const raw = readFileSync(goldenPath('formats', file));
        for (const name of st.keys()) {
          const a = await ck.read(name);
          const b = await st.read(name);
          expect(ck.info(name)).toEqual(st.info(name));
          expect(sha256(a.data), name).toBe(sha256(b.data));
          const loc = ck.location(name);
          if (loc)
            expect(sha256(raw.subarray(loc.offset, loc.offset + loc.length)), name).toBe(sha256(b.data));
        }
        // views that are not one contiguous range have no location
        const noncontig = ck.keys().filter((k) => k.startsWith('noncontig') || k === 'expanded');
        for (const k of noncontig) expect(ck.location(k), k).toBeUndefined();
      } finally {
        await ck.close();
        await st.close();
      }
    });
  }
});

describe('tiny SD checkpoint', () => {
  const meta = JSON.parse(readFileSync(goldenPath('formats', 'tiny_sd_ckpt.json'), 'utf8')) as {
    file: string;
    top_level_keys: string[];
    tensors: Record<string, { dtype: string; shape: number[]; bytes_sha256: string }>;
    epoch: number;
    global_step: number;
    'pytorch-lightning_version': string;
  };

  it('openModel unwraps state_dict; every tensor equals tiny_sd_ckpt.json and the safetensors twin', async () => {
    const ck = await openModel(goldenPath('formats', meta.file));
    const st = await openSafetensors(goldenPath('tiny-sd', 'tiny-sd-fp16.safetensors'));
    try {
      expect(ck.keys()).toEqual(Object.keys(meta.tensors).sort());
      expect(ck.keys()).toEqual(st.keys());
      for (const [name, g] of Object.entries(meta.tensors)) {
        const t = await ck.read(name);
        expect(t.shape, name).toEqual(g.shape);
        expect(sha256(t.data), name).toBe(g.bytes_sha256);
        expect(ck.location(name)!.length).toBe(t.data.byteLength);
      }
    } finally {
      await ck.close();
      await st.close();
    }
  });

  it('readTorchFile keeps the top-level entries and reads the lightning callbacks inertly', async () => {
    const tree = (await readTorchFile(goldenPath('formats', meta.file))) as Record<string, unknown>;
    expect(Object.keys(tree)).toEqual(meta.top_level_keys);
    expect(tree.epoch).toBe(meta.epoch);
    expect(tree.global_step).toBe(meta.global_step);
    expect(tree['pytorch-lightning_version']).toBe(meta['pytorch-lightning_version']);
    const cb = tree.callbacks as Record<string, Record<string, unknown>>;
    const inner = Object.values(cb)[0]!;
    expect(typeof inner.current_score).toBe('number');
  });
});

describe('textual-inversion embeddings', () => {
  const emb = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
    files: Record<string, { vec: number[][] | Record<string, number[][]>; step: number | null }>;
  };
  const torchFiles = Object.keys(emb.files).filter((f) => /\.(pt|bin|ckpt)$/.test(f));

  function tensorsIn(v: unknown, out: Tensor[] = []): Tensor[] {
    if (isTensor(v)) out.push(v);
    else if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) tensorsIn(x, out);
    return out;
  }

  for (const f of torchFiles) {
    it(`${f}: holds the expected vectors`, async () => {
      const tree = (await readTorchFile(goldenPath('formats', f))) as Record<string, unknown>;
      const want = (emb.files[f]!.vec as number[][]).flat();
      const match = tensorsIn(tree).find((t) => t.dtype === 'F32' && t.data.byteLength === want.length * 4);
      expect(match, 'a float tensor with the embedding vectors').toBeDefined();
      expect(Array.from(toFloat32(match!))).toEqual(want);
      if (emb.files[f]!.step !== null) expect(tree.step).toEqual(emb.files[f]!.step);
    });
  }
});

describe('A1111 safe-check parity', () => {
  const check = JSON.parse(readFileSync(goldenPath('formats', 'a1111_safe_check.json'), 'utf8')) as {
    results: Record<string, string>;
  };
  for (const [label, verdict] of Object.entries(check.results)) {
    const file = label.split(' ')[0]!;
    if (!verdict.startsWith('accepted')) continue;
    it(`accepts ${label}, which A1111 accepts`, async () => {
      await expect(readTorchFile(goldenPath('formats', file))).resolves.toBeDefined();
    });
  }
});

describe('malicious pickles', () => {
  const manifest = JSON.parse(readFileSync(goldenPath('formats', 'malicious', 'manifest.json'), 'utf8')) as {
    files: { file: string; marker: string }[];
  };
  for (const { file, marker } of manifest.files) {
    it(`refuses ${file} and runs nothing`, async () => {
      const p = goldenPath('formats', 'malicious', file);
      const e1 = await errorOf(readTorchFile(p));
      expect(e1).toBeInstanceOf(UnsafeFileError);
      expect(e1.message).toMatch(/malicious/);
      const e2 = await errorOf(openModel(p));
      expect(e2).toBeInstanceOf(UnsafeFileError);
      expect(existsSync(marker)).toBe(false);
    });
  }
});

describe('hostile torch files', () => {
  const f32x4 = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
  const goodPkl = tensorPickle({ cls: 'FloatStorage', key: '0', numel: 4, size: [2, 2], stride: [2, 1] });

  function zipFile(name: string, entries: Parameters<typeof buildZip>[0], zip64 = false): string {
    const p = join(dir, name);
    writeFileSync(p, buildZip(entries, zip64));
    return p;
  }

  it('reads a hand-made torch zip, plain and zip64', async () => {
    for (const z64 of [false, true]) {
      const p = zipFile(
        `good${z64}.pt`,
        [
          { name: 'a/data.pkl', data: goodPkl },
          { name: 'a/data/0', data: f32x4 },
          { name: 'a/version', data: bytesOf('3\n') },
        ],
        z64,
      );
      const src = await openCheckpoint(p);
      expect(Array.from(await src.readFloat32('w'))).toEqual([1, 2, 3, 4]);
      await src.close();
    }
  });

  it('reads a tensor stored beyond 4 GB of a zip64 checkpoint without reading the rest', async () => {
    const big = 4.5 * 2 ** 30; // 1.2e9 float32 elements, a sparse hole on disk
    const pkl = bytesOf(
      tensorPickle({
        cls: 'FloatStorage',
        key: '0',
        numel: big / 4,
        size: [big / 4],
        stride: [1],
        name: 'huge',
      }).subarray(0, -1),
      0x28, // a second tensor, in the same dict: MARK ... SETITEMS
      tensorPickle({
        cls: 'FloatStorage',
        key: '1',
        numel: 4,
        size: [4],
        stride: [1],
        name: 'small',
      }).subarray(3, -2),
      0x75,
      0x2e,
    );
    const p = join(dir, 'huge.ckpt');
    writeSparseZip64(p, [
      { name: 'h/data.pkl', size: pkl.byteLength, data: pkl },
      { name: 'h/data/0', size: big },
      { name: 'h/data/1', size: 16, data: f32x4 },
      { name: 'h/version', size: 2, data: bytesOf('3\n') },
    ]);
    const rssBefore = process.memoryUsage().rss;
    const src = await openModel(p);
    try {
      expect(src.info('huge')).toEqual({ name: 'huge', dtype: 'F32', shape: [big / 4] });
      expect(Array.from(await src.readFloat32('small'))).toEqual([1, 2, 3, 4]);
      expect(src.location('small')!.offset).toBeGreaterThan(2 ** 32);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(256 * 2 ** 20);
    } finally {
      await src.close();
      rmSync(p);
    }
  });

  const refusals: [string, () => string, typeof UserError, RegExp][] = [
    [
      'a compressed entry (zip bomb)',
      () =>
        zipFile('bomb.pt', [
          { name: 'a/data.pkl', data: goodPkl },
          { name: 'a/data/0', data: new Uint8Array(16), method: 8, declaredSize: 2 ** 31 },
        ]),
      UnsafeFileError,
      /compressed/,
    ],
    [
      'a zip64 entry declaring 1 TB',
      () =>
        zipFile(
          'bomb64.pt',
          [
            { name: 'a/data.pkl', data: goodPkl },
            { name: 'a/data/0', data: f32x4, declaredSize: 2 ** 40 },
          ],
          true,
        ),
      UnsafeFileError,
      /compressed/,
    ],
    [
      'path traversal',
      () =>
        zipFile('trav.pt', [
          { name: 'a/data.pkl', data: goodPkl },
          { name: '../evil/data/0', data: f32x4 },
        ]),
      UnsafeFileError,
      /unexpected entry/,
    ],
    [
      'a dot-dot folder',
      () => zipFile('trav2.pt', [{ name: '../data.pkl', data: goodPkl }]),
      UnsafeFileError,
      /unexpected entry/,
    ],
    [
      'an extra entry',
      () =>
        zipFile('extra.pt', [
          { name: 'a/data.pkl', data: goodPkl },
          { name: 'a/payload.py', data: f32x4 },
        ]),
      UnsafeFileError,
      /unexpected entry/,
    ],
    [
      'a storage larger than its entry',
      () =>
        zipFile('lie.pt', [
          {
            name: 'a/data.pkl',
            data: tensorPickle({
              cls: 'FloatStorage',
              key: '0',
              numel: 2 ** 30,
              size: [2 ** 30],
              stride: [1],
            }),
          },
          { name: 'a/data/0', data: f32x4 },
        ]),
      UnsafeFileError,
      /declares/,
    ],
    [
      'a view past the end of its storage',
      () =>
        zipFile('view.pt', [
          {
            name: 'a/data.pkl',
            data: tensorPickle({ cls: 'FloatStorage', key: '0', numel: 4, size: [3, 3], stride: [3, 1] }),
          },
          { name: 'a/data/0', data: f32x4 },
        ]),
      UnsafeFileError,
      /reaches element/,
    ],
    [
      'a huge broadcast view',
      () =>
        zipFile('expand.pt', [
          {
            name: 'a/data.pkl',
            data: tensorPickle({
              cls: 'FloatStorage',
              key: '0',
              numel: 4,
              size: [1 << 20, 1 << 20],
              stride: [0, 0],
            }),
          },
          { name: 'a/data/0', data: f32x4 },
        ]),
      UnsafeFileError,
      /beyond the limit/,
    ],
    [
      'an unknown global',
      () => zipFile('glob.pt', [{ name: 'a/data.pkl', data: bytesOf(0x80, 2, 'cfoo.bar\nBaz\n', 0x2e) }]),
      UnsafeFileError,
      /foo\.bar\.Baz/,
    ],
    [
      'a missing storage entry',
      () => zipFile('nostorage.pt', [{ name: 'a/data.pkl', data: goodPkl }]),
      UserError,
      /no data entry/,
    ],
    [
      'two data.pkl folders',
      () =>
        zipFile('two.pt', [
          { name: 'a/data.pkl', data: goodPkl },
          { name: 'b/data.pkl', data: goodPkl },
        ]),
      UnsafeFileError,
      /two different folders/,
    ],
  ];
  for (const [what, make, kind, msg] of refusals) {
    it(`refuses ${what}`, async () => {
      const p = make();
      const e = await errorOf(readTorchFile(p));
      expect(e).toBeInstanceOf(kind);
      expect(e.message).toMatch(msg);
    });
  }

  it('gives a clear error for truncated files of every kind', async () => {
    for (const f of [...stateDictFiles, 'tiny-sd-fp16.ckpt']) {
      const raw = readFileSync(goldenPath('formats', f));
      for (const frac of [0.1, 0.5, 0.97]) {
        const p = join(dir, `trunc-${frac}-${f}`);
        writeFileSync(p, raw.subarray(0, Math.floor(raw.length * frac)));
        const e = await errorOf(openModel(p).then((s) => Promise.all(s.keys().map((k) => s.read(k)))));
        expect(e, `${f} cut at ${frac}`).toBeInstanceOf(UserError);
      }
    }
  });

  it('refuses truncated and corrupt pickles, deep nesting and bad legacy storages', async () => {
    const cases: [Uint8Array, RegExp][] = [
      [bytesOf(0x80, 2, 0x58, u64le(0n).subarray(0, 4)), /ends early|truncated/],
      [bytesOf(0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 'abc'), /ends early|truncated/],
      [bytesOf(0x80, 2, 0x8d, u64le(2n ** 60n)), /more than the data holds/],
      [bytesOf(0x80, 2, 0x52, 0x2e), /underflow/],
      [bytesOf(0x80, 2, 0xff, 0, 0), /unknown opcode/],
      [bytesOf(0x80, 2, 0x68, 7, 0x2e), /memo key/],
      [bytesOf(0x80, 2, ...Array(5000).fill(0x5d), ...Array(4999).fill(0x61), 0x2e), /nesting/],
      [bytesOf(0x80, 2, str('x'), 0x29, 0x52, 0x2e), /not an allowed constructor/],
    ];
    for (const [i, [data, msg]] of cases.entries()) {
      const p = join(dir, `bad${i}.pkl`);
      writeFileSync(p, data);
      const e = await errorOf(readTorchFile(p));
      expect(e, `case ${i}`).toBeInstanceOf(UserError);
      expect(e.message, `case ${i}`).toMatch(msg);
    }
  });

  it('never lets pickle data forge or modify a storage, a global or a tensor', async () => {
    const J = (n: number) => bytesOf(0x4a, new Uint8Array(new Int32Array([n]).buffer));
    const storage = bytesOf(
      0x28,
      str('storage'),
      'ctorch\nFloatStorage\n',
      str('0'),
      str('cpu'),
      J(4),
      0x74,
      0x51,
    );
    const rebuild = 'ctorch._utils\n_rebuild_tensor_v2\n';
    const cases: [string, Uint8Array, RegExp][] = [
      [
        'a dict posing as a storage',
        bytesOf(
          0x80,
          2,
          rebuild,
          0x28,
          0x7d,
          0x28,
          str('kind'),
          str('storage'),
          str('numel'),
          J(1 << 30),
          str('dtype'),
          str('F32'),
          str('fileOffset'),
          J(0),
          str('key'),
          str('0'),
          0x75,
          J(0),
          0x28,
          J(1 << 28),
          0x74,
          0x28,
          J(1),
          0x74,
          0x89,
          0x74,
          0x52,
          0x2e,
        ),
        /not a storage/,
      ],
      ['SETITEM on a storage', bytesOf(0x80, 2, storage, str('numel'), J(1 << 30), 0x73, 0x2e), /non-dict/],
      [
        'BUILD on a storage',
        bytesOf(0x80, 2, storage, 0x7d, str('numel'), J(1 << 30), 0x73, 0x62, 0x2e),
        /takes no state/,
      ],
      [
        'BUILD on a global',
        bytesOf(0x80, 2, 'ctorch\nSize\n', 0x7d, str('call'), J(1), 0x73, 0x62, 0x2e),
        /takes no state/,
      ],
      [
        'a dict posing as a callable global',
        bytesOf(
          0x80,
          2,
          0x7d,
          str('kind'),
          str('global'),
          0x73,
          0x7d,
          str('call'),
          J(1),
          0x73,
          0x29,
          0x52,
          0x2e,
        ),
        /not an allowed constructor/,
      ],
      [
        'a 100 kB integer',
        bytesOf(
          0x80,
          2,
          0x8b,
          new Uint8Array(new Int32Array([100_000]).buffer),
          new Uint8Array(100_000),
          0x2e,
        ),
        /too large/,
      ],
    ];
    for (const [what, pkl, msg] of cases) {
      const p = zipFile(`forge-${what.replace(/\W+/g, '-')}.pt`, [
        { name: 'a/data.pkl', data: pkl },
        { name: 'a/data/0', data: f32x4 },
      ]);
      const e = await errorOf(readTorchFile(p));
      expect(e, what).toBeInstanceOf(UserError);
      expect(e.message, what).toMatch(msg);
    }
  });

  it('refuses a legacy file whose storage header lies about its size', async () => {
    const raw = Buffer.from(readFileSync(goldenPath('formats', 'state_dict_legacy.pt')));
    // Find the first storage header: the keys pickle ends with "].", then u64 count.
    const sd = await readTorchFile(goldenPath('formats', 'state_dict_legacy.pt'));
    expect(sd).toBeDefined();
    // The storage-key list is the last pickle: it follows the last 'cpu' location string and ends with APPENDS STOP.
    const idx = raw.indexOf(Buffer.from([0x65, 0x2e]), raw.lastIndexOf(Buffer.from('cpu'))) + 2;
    raw.writeBigUInt64LE(2n ** 40n, idx);
    const p = join(dir, 'legacy-lie.pt');
    writeFileSync(p, raw);
    const e = await errorOf(readTorchFile(p));
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toMatch(/declares \d+ elements but the file stores 1099511627776/);
  });
});
