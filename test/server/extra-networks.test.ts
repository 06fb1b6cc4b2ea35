import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { parseStylesCsv } from '../../src/prompt/styles.js';
import { call, makeDataDir, startServer, tinyCheckpoint, type TestServer } from './helpers.js';

const f32 = (shape: number[]) =>
  float32ArrayToTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.25), shape);

describe('extra networks and styles routes', () => {
  let server: TestServer;
  let dataDir: string;
  let png: Buffer;

  beforeAll(async () => {
    dataDir = makeDataDir();
    const lora = join(dataDir, 'models', 'Lora');
    mkdirSync(join(lora, 'sub'), { recursive: true });
    await writeSafetensors(
      join(lora, 'sub', 'shiny_style.safetensors'),
      [['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', f32([4, 8])]],
      {
        ss_network_dim: '4',
        ss_base_model_version: 'sdxl_base_v1-0',
        ss_output_name: 'ShinyStyle',
        ss_tag_frequency: JSON.stringify({ '10_shiny': { shiny: 12, metal: 30, ' chrome': 3 } }),
      },
    );
    await writeSafetensors(join(lora, 'plain.safetensors'), [['x.lora_down.weight', f32([2, 2])]]);
    png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#3366cc' } })
      .png()
      .toBuffer();
    writeFileSync(join(lora, 'sub', 'shiny_style.preview.png'), png);
    mkdirSync(join(dataDir, 'embeddings'), { recursive: true });
    await writeSafetensors(join(dataDir, 'embeddings', 'goodhands.safetensors'), [
      ['emb_params', f32([3, 768])],
    ]);
    writeFileSync(join(dataDir, 'embeddings', 'goodhands.png'), png);
    mkdirSync(join(dataDir, 'models', 'hypernetworks'), { recursive: true });
    writeFileSync(join(dataDir, 'models', 'hypernetworks', 'hn1.pt'), Buffer.alloc(16));
    server = await startServer(dataDir);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('lists every kind with what its file says, and whether a preview lies beside it', async () => {
    const r = await call(server.url, '/api/v1/extra-networks');
    expect(r.status).toBe(200);
    const items = r.body.items as Record<string, unknown>[];
    const by = (kind: string, name: string) => items.find((i) => i.kind === kind && i.name === name);
    const ckpt = basename(tinyCheckpoint()).replace(/\.[^.]+$/, '');
    expect(by('checkpoint', ckpt)).toMatchObject({ has_preview: false });
    expect(by('lora', 'shiny_style')).toMatchObject({
      alias: 'ShinyStyle',
      prompt: '<lora:shiny_style:1>',
      base_model: 'SDXL',
      rank: 4,
      tags: [
        ['metal', 30],
        ['shiny', 12],
        ['chrome', 3],
      ],
      has_preview: true,
    });
    expect(by('lora', 'plain')).toMatchObject({ rank: null, tags: [], has_preview: false });
    expect(by('embedding', 'goodhands')).toMatchObject({
      prompt: 'goodhands',
      vectors: 3,
      shape: 768,
      has_preview: true,
    });
    expect(by('hypernetwork', 'hn1')).toMatchObject({ prompt: '<hypernet:hn1:1>', has_preview: false });
  });

  it('serves a preview by kind and name only; names never become paths', async () => {
    const res = await fetch(`${server.url}/api/v1/extra-networks/preview?kind=lora&name=shiny_style`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
    for (const name of [
      'plain',
      '../../etc/passwd',
      'sub/shiny_style',
      join(dataDir, 'models', 'Lora', 'sub', 'shiny_style'),
    ]) {
      const r = await call(
        server.url,
        `/api/v1/extra-networks/preview?kind=lora&name=${encodeURIComponent(name)}`,
      );
      expect(r.status, name).toBe(404);
    }
    const bad = await call(server.url, '/api/v1/extra-networks/preview?kind=file&name=x');
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body.detail)).toContain('kind');
  });

  it('saves a style into styles.csv (A1111 columns), replacing one of the same name; prompt-styles lists it', async () => {
    const save = (body: unknown) => call(server.url, '/api/v1/prompt-styles', { body });
    expect(
      (
        await save({
          name: 'Cinematic',
          prompt: '{prompt}, film grain, "quoted"',
          negative_prompt: 'cartoon',
        })
      ).status,
    ).toBe(200);
    expect((await save({ name: 'Second', prompt: 'a, b', negative_prompt: '' })).status).toBe(200);
    const again = await save({ name: 'Cinematic', prompt: '{prompt}, 35mm', negative_prompt: 'cartoon, 3d' });
    expect(again.body).toEqual([
      { name: 'Cinematic', prompt: '{prompt}, 35mm', negative_prompt: 'cartoon, 3d' },
      { name: 'Second', prompt: 'a, b', negative_prompt: '' },
    ]);
    const file = join(dataDir, 'styles.csv');
    const text = readFileSync(file, 'utf8');
    expect(text.replace(/^\ufeff/, '').split('\r\n')[0]).toBe('name,prompt,negative_prompt');
    expect(parseStylesCsv(text).map((s) => s.name)).toEqual(['Cinematic', 'Second']);
    expect(existsSync(`${file}.bak`)).toBe(true);
    const listed = await call(server.url, '/sdapi/v1/prompt-styles');
    expect(listed.body).toEqual(again.body);
    for (const [body, field] of [
      [{ prompt: 'x', negative_prompt: '' }, 'name'],
      [{ name: '   ', prompt: 'x', negative_prompt: '' }, 'name'],
      [{ name: 'x', negative_prompt: '' }, 'prompt'],
    ] as const) {
      const r = await save(body);
      expect(r.status, JSON.stringify(body)).toBe(422);
      expect(JSON.stringify(r.body.detail)).toContain(field);
    }
    expect(parseStylesCsv(readFileSync(file, 'utf8')).length).toBe(2);
  });

  it('the new routes are in the OpenAPI document', async () => {
    const doc = await call(server.url, '/openapi.json');
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/extra-networks',
        '/api/v1/extra-networks/preview',
        '/api/v1/prompt-styles',
      ]),
    );
  });
});
