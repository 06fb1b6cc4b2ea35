/**
 * LoRA through the HTTP API (A1111's /sdapi/v1/txt2img): a `<lora:…>` tag in the request's prompt
 * is applied from the server's LoRA folder, the image's infotext carries `Lora hashes`, and
 * /sdapi/v1/loras lists the file with its alias.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, makeDataDir, startServer, type TestServer } from '../server/helpers.js';
import { adapterPath, casesOf } from './helpers.js';

let server: TestServer;
let dataDir: string;
const c = casesOf('lora_apply').find(
  (x) => (x.patched_tensors as string[]).length > 0 && Object.keys(x.apply_errors as object).length === 0,
)!;

beforeAll(async () => {
  dataDir = makeDataDir();
  mkdirSync(join(dataDir, 'models', 'Lora'), { recursive: true });
  copyFileSync(adapterPath(c.adapter as string), join(dataDir, 'models', 'Lora', c.adapter as string));
  server = await startServer(dataDir);
});
afterAll(async () => {
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('LoRA over the A1111 API', () => {
  it('txt2img applies <lora:…> and writes Lora hashes; /loras lists the file', async () => {
    const small = { steps: 2, width: 64, height: 64, sampler_name: 'Euler', seed: 3, save_images: false };
    const list = await call(server.url, '/sdapi/v1/loras');
    expect(list.status).toBe(200);
    const disk = c.a1111_on_disk as { alias: string };
    expect(list.body.map((l: { alias: string }) => l.alias)).toContain(disk.alias);

    const withTag = await call(server.url, '/sdapi/v1/txt2img', {
      body: { prompt: 'a red cube ' + (c.prompt_tag as string), ...small },
    });
    expect(withTag.status).toBe(200);
    const info = JSON.parse(withTag.body.info) as { infotexts: string[] };
    expect(info.infotexts[0]).toContain(`Lora hashes: "${c.infotext_lora_hashes as string}"`);
    const without = await call(server.url, '/sdapi/v1/txt2img', { body: { prompt: 'a red cube', ...small } });
    expect(without.status).toBe(200);
    expect(withTag.body.images[0]).not.toBe(without.body.images[0]);
  }, 120_000);
});
