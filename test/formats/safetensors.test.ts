import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { MemoryTensorSource, openModel } from '../../src/formats/open.js';
import { openSafetensors, readSafetensorsHeader, writeSafetensors } from '../../src/formats/safetensors.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { UserError } from '../../src/util/errors.js';
import { goldenPath } from '../helpers/golden.js';
import { expectTensorMatches, sha256, stateDictJson, type GoldenTensorEntry } from './golden-tensors.js';

const dir = mkdtempSync(join(tmpdir(), 'sdstudio-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a header object (or raw header text) and a data section. */
function craft(
  name: string,
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  lengthOverride?: bigint,
): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(json.byteLength));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([prefix, json, data]));
  return p;
}

describe('safetensors golden files', () => {
  it('reads state_dict.safetensors with the values of state_dict.json', async () => {
    const src = await openSafetensors(goldenPath('formats', 'state_dict.safetensors'));
    try {
      const { entries } = stateDictJson();
      const tensorNames = Object.keys(entries).filter((k) => entries[k]!.kind === 'tensor');
      expect(src.keys()).toEqual([...tensorNames].sort());
      for (const name of tensorNames) {
        const t = await src.read(name);
        expectTensorMatches(name, t, entries[name] as GoldenTensorEntry);
        const loc = src.location(name)!;
        const raw = readFileSync(loc.path).subarray(loc.offset, loc.offset + loc.length);
        expect(sha256(raw)).toBe(sha256(t.data));
      }
      expect(src.metadata.format).toBe('pt');
    } finally {
      await src.close();
    }
  });

  it('opens every tiny-sd safetensors file through openModel, and readFloat32 matches the raw bytes', async () => {
    const files = readdirSync(goldenPath('tiny-sd')).filter((f) => f.endsWith('.safetensors'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const src = await openModel(goldenPath('tiny-sd', f));
      expect(src.format).toBe('safetensors');
      const name = src.keys()[0]!;
      const info = src.info(name)!;
      const t = await src.read(name);
      expect(t.dtype).toBe(info.dtype);
      expect((await src.readFloat32(name)).length).toBe(info.shape.reduce((a, b) => a * b, 1));
      await src.close();
    }
  });
});

describe('safetensors embeddings', () => {
  const emb = JSON.parse(readFileSync(goldenPath('formats', 'embeddings.json'), 'utf8')) as {
    files: Record<string, { vec: number[][] | Record<string, number[][]> }>;
  };
  for (const [file, { vec }] of Object.entries(emb.files).filter(([f]) => f.endsWith('.safetensors'))) {
    it(`${file}: holds the expected vectors`, async () => {
      const src = await openModel(goldenPath('formats', file));
      try {
        if (Array.isArray(vec)) {
          // a single-tensor file: its one tensor is the embedding
          expect(src.keys().length).toBe(1);
          expect(Array.from(await src.readFloat32(src.keys()[0]!))).toEqual(vec.flat());
        } else {
          for (const [name, rows] of Object.entries(vec)) {
            expect(Array.from(await src.readFloat32(name)), name).toEqual(rows.flat());
          }
        }
      } finally {
        await src.close();
      }
    });
  }
});

describe('truncated real files', () => {
  it('every cut of a golden safetensors file is a clear error on open or read', async () => {
    const raw = readFileSync(goldenPath('formats', 'state_dict.safetensors'));
    for (const frac of [0, 0.001, 0.2, 0.5, 0.9, 0.999]) {
      const p = join(dir, `cut-${frac}.safetensors`);
      writeFileSync(p, raw.subarray(0, Math.floor(raw.length * frac)));
      const err = await openSafetensors(p).then(
        async (s) => {
          await Promise.all(s.keys().map((k) => s.read(k)));
          await s.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err, `cut at ${frac}`).toBeInstanceOf(UserError);
    }
  });
});

describe('writeSafetensors', () => {
  const tensors = new Map<string, Tensor>([
    ['b.weight', float32ArrayToTensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], 'F16')],
    ['a.bias', float32ArrayToTensor(new Float32Array([0.5]), [1])],
    ['c.ids', { dtype: 'I64', shape: [2], data: new Uint8Array(new BigInt64Array([7n, -1n]).buffer) }],
    ['d.empty', { dtype: 'F32', shape: [0, 3], data: new Uint8Array(0) }],
  ]);

  it('round-trips tensors and metadata, sorted, 8-byte aligned header padded with spaces', async () => {
    const out = join(dir, 'rt.safetensors');
    await writeSafetensors(out, tensors, { ss_tag: 'x', format: 'pt' });
    const raw = readFileSync(out);
    const n = Number(raw.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = raw.subarray(8, 8 + n).toString();
    expect(headerText.trimEnd().length).toBeLessThanOrEqual(n);
    expect(/^ *$/.test(headerText.slice(headerText.trimEnd().length))).toBe(true);
    const h = await readSafetensorsHeader(out);
    expect(h.tensors.map((t) => t.name)).toEqual(['a.bias', 'b.weight', 'c.ids', 'd.empty']);
    expect(h.metadata).toEqual({ ss_tag: 'x', format: 'pt' });
    const src = await openSafetensors(out);
    for (const [name, t] of tensors) {
      const r = await src.read(name);
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(Buffer.from(r.data).equals(Buffer.from(t.data))).toBe(true);
    }
    await src.close();
    expect(readdirSync(dir).some((f) => f.includes('.tmp-'))).toBe(false);
  });

  it('streams from an async iterable in any order when infos are given up front', async () => {
    const out = join(dir, 'stream.safetensors');
    const infos = [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
    async function* gen() {
      for (const e of [...tensors].reverse()) yield e;
    }
    await writeSafetensors(out, gen(), undefined, { infos });
    const mem = new MemoryTensorSource(tensors);
    const src = await openSafetensors(out);
    expect(src.keys()).toEqual(mem.keys());
    for (const name of mem.keys()) {
      expect(Buffer.from((await src.read(name)).data).equals(Buffer.from((await mem.read(name)).data))).toBe(
        true,
      );
    }
    await src.close();
  });

  it('never leaves a half-written output when a tensor is wrong or missing', async () => {
    const out = join(dir, 'fail.safetensors');
    const infos = [{ name: 'x', dtype: 'F32' as const, shape: [2] }];
    await expect(
      writeSafetensors(out, [['x', { dtype: 'F32', shape: [3], data: new Uint8Array(12) }]], undefined, {
        infos,
      }),
    ).rejects.toThrow(/announced/);
    await expect(writeSafetensors(out, [], undefined, { infos })).rejects.toThrow(/never arrived/);
    await expect(
      writeSafetensors(out, [['x', { dtype: 'F32', shape: [2], data: new Uint8Array(4) }]]),
    ).rejects.toThrow(/bytes/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).some((f) => f.includes('.tmp-'))).toBe(false);
  });

  it('a file-system failure (a folder in the way, a missing folder) is a UserError saying what to do', async () => {
    const folder = join(dir, 'in-the-way.safetensors');
    mkdirSync(folder);
    const x: [string, Tensor][] = [['x', { dtype: 'F32', shape: [1], data: new Uint8Array(4) }]];
    const err = await writeSafetensors(folder, x).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/EISDIR \(a folder has that name/);
    await expect(writeSafetensors(join(dir, 'no', 'such', 'x.safetensors'), x)).rejects.toThrow(
      /ENOENT \(the folder does not exist/,
    );
    expect(readdirSync(dir).some((f) => f.includes('.tmp-'))).toBe(false);
  });
});

describe('hostile safetensors headers', () => {
  const f32x2 = new Uint8Array(8);
  const cases: [string, () => string, RegExp][] = [
    [
      'empty file',
      () => {
        const p = join(dir, 'empty.st');
        writeFileSync(p, '');
        return p;
      },
      /shorter than/,
    ],
    ['zero header length', () => craft('zero.st', ''), /too small/],
    ['huge header length', () => craft('huge.st', '{}', undefined, 2n ** 62n), /exceeds/],
    ['header past end of file', () => craft('past.st', '{}', undefined, 4096n), /past the end/],
    ['non-JSON header', () => craft('nonjson.st', '{not json}'), /JSON/],
    ['JSON array header', () => craft('array.st', '[1,2]'), /not a JSON object/],
    [
      'unknown dtype',
      () => craft('dtype.st', { x: { dtype: 'F8', shape: [2], data_offsets: [0, 2] } }, f32x2),
      /unknown dtype/,
    ],
    [
      'negative dim',
      () => craft('neg.st', { x: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32x2),
      /invalid shape/,
    ],
    [
      'fractional dim',
      () => craft('frac.st', { x: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, f32x2),
      /invalid shape/,
    ],
    [
      'offsets reversed',
      () => craft('rev.st', { x: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f32x2),
      /data_offsets/,
    ],
    [
      'offsets beyond file (truncated)',
      () => craft('trunc.st', { x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32x2),
      /truncated/,
    ],
    [
      'size mismatch (lying shape)',
      () => craft('lie.st', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32x2),
      /span 8 bytes/,
    ],
    [
      'huge declared shape',
      () =>
        craft(
          'hugeshape.st',
          { x: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } },
          f32x2,
        ),
      /bytes/,
    ],
    [
      'overlapping tensors',
      () =>
        craft(
          'overlap.st',
          {
            x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            y: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
          },
          f32x2,
        ),
      /overlap/,
    ],
    [
      'a gap between tensors (bytes no tensor owns)',
      () =>
        craft(
          'gap.st',
          {
            x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
            y: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
          },
          new Uint8Array(12),
        ),
      /bytes 4\.\.8 of the data before tensor "y" belong to no tensor/,
    ],
    [
      'a gap before the first tensor',
      () => craft('gap0.st', { x: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32x2),
      /bytes 0\.\.4 .* "x" belong to no tensor/,
    ],
    [
      'trailing bytes after the last tensor',
      () => craft('tail.st', { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32x2),
      /4 bytes after the last tensor/,
    ],
    ['metadata not strings', () => craft('meta.st', { __metadata__: { a: 1 } }), /not a string/],
    ['entry not an object', () => craft('entry.st', { x: 3 }), /not an object/],
  ];
  for (const [what, make, msg] of cases) {
    it(`refuses ${what} with a clear error`, async () => {
      const p = make();
      const err = await openSafetensors(p).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).toContain(p);
    });
  }

  it('refuses a missing file with a UserError', async () => {
    await expect(openSafetensors(join(dir, 'nope.safetensors'))).rejects.toBeInstanceOf(UserError);
  });
});

describe('MemoryTensorSource', () => {
  it('serves tensors by name and rejects inconsistent ones', async () => {
    const t = float32ArrayToTensor(new Float32Array([1, 2]), [2], 'BF16');
    const m = new MemoryTensorSource(new Map([['w', t]]), { metadata: { k: 'v' } });
    expect(m.format).toBe('memory');
    expect(m.keys()).toEqual(['w']);
    expect(m.info('w')).toEqual({ name: 'w', dtype: 'BF16', shape: [2] });
    expect(Array.from(await m.readFloat32('w'))).toEqual([1, 2]);
    expect(m.location('w')).toBeUndefined();
    await expect(m.read('nope')).rejects.toThrow(/nope/);
    expect(
      () => new MemoryTensorSource(new Map([['bad', { dtype: 'F32', shape: [3], data: new Uint8Array(4) }]])),
    ).toThrow(/bad/);
  });
});
