/**
 * Hypernetworks through the HTTP API (A1111's /sdapi/v1): /hypernetworks lists the server's `.pt`
 * files as `{name, path}`, a `<hypernet:…>` tag in a txt2img prompt is applied (the infotext's
 * prompt keeps it), and the `sd_hypernetwork` setting adds the tag to the prompt as A1111 does.
 */
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, makeDataDir, startServer, type TestServer } from '../server/helpers.js';
import { adapterPath, casesOf } from './helpers.js';

let server: TestServer;
let dataDir: string;
const c = casesOf('hypernetwork').find((x) => x.file)!;
const name = 'hn_api';

beforeAll(async () => {
  dataDir = makeDataDir();
  const dir = join(dataDir, 'models', 'hypernetworks');
  mkdirSync(dir, { recursive: true });
  copyFileSync(adapterPath(c.file as string), join(dir, `${name}.pt`));
  // Not a hypernetwork file A1111 lists (only *.pt are).
  writeFileSync(join(dir, 'notes.safetensors'), '');
  server = await startServer(dataDir);
});
afterAll(async () => {
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('hypernetworks over the A1111 API', () => {
  it('/hypernetworks lists them; txt2img applies <hypernet:…> and sd_hypernetwork', async () => {
    const list = await call(server.url, '/sdapi/v1/hypernetworks');
    expect(list.status).toBe(200);
    expect(list.body).toEqual([{ name, path: join(dataDir, 'models', 'hypernetworks', `${name}.pt`) }]);

    const small = { steps: 2, width: 64, height: 64, sampler_name: 'Euler', seed: 3, save_images: false };
    const txt2img = async (body: Record<string, unknown>) => {
      const r = await call(server.url, '/sdapi/v1/txt2img', { body: { ...small, ...body } });
      expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
      return { image: r.body.images[0] as string, info: JSON.parse(r.body.info) as { infotexts: string[] } };
    };
    const withTag = await txt2img({ prompt: `a red cube <hypernet:${name}:1.0>` });
    expect(withTag.info.infotexts[0]!.split('\n')[0]).toBe(`a red cube <hypernet:${name}:1.0>`);
    const without = await txt2img({ prompt: 'a red cube ' });
    expect(withTag.image).not.toBe(without.image);

    // The setting appends `<hypernet:NAME:1.0>` to the prompt: the same picture as the tag.
    const bySetting = await txt2img({ prompt: 'a red cube ', override_settings: { sd_hypernetwork: name } });
    expect(bySetting.info.infotexts[0]!.split('\n')[0]).toBe(`a red cube <hypernet:${name}:1.0>`);
    expect(bySetting.image).toBe(withTag.image);
  }, 180_000);
});
