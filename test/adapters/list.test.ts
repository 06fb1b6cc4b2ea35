/** `sdstudio list loras|hypernetworks`: name, alias, base model, rank and training tags as A1111 shows them. */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseLoraMetadata } from '../../src/adapters/lora-tags.js';
import { runCli } from '../pipeline/cli-helpers.js';
import { adapterPath, casesOf } from './helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('sdstudio list loras', () => {
  it('lists every LoRA of the golden cases with its alias, base model, rank and tags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sd-list-'));
    dirs.push(dir);
    await mkdir(join(dir, 'models', 'Lora'), { recursive: true });
    const cases = casesOf('lora_apply');
    for (const c of cases)
      await copyFile(adapterPath(c.adapter as string), join(dir, 'models', 'Lora', c.adapter as string));
    const first = cases[0]!.adapter as string;
    await writeFile(join(dir, 'models', 'Lora', first.replace(/\.safetensors$/, '.png')), '');
    const r = await runCli(['list', 'loras', '--data-dir', dir, '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const items = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(items).toHaveLength(cases.length);
    for (const c of cases) {
      const disk = c.a1111_on_disk as {
        alias: string;
        sd_version: string;
        metadata_parsed: Record<string, unknown>;
      };
      const item = items.find((x) => x.name === (c.adapter as string).replace(/\.safetensors$/, ''))!;
      expect(item.alias).toBe(disk.alias);
      expect(item.baseModel).toBe(disk.sd_version);
      const meta = c.metadata_raw as Record<string, string>;
      expect(item.rank).toBe(meta.ss_network_dim ? Number(meta.ss_network_dim) : null);
      const freq = parseLoraMetadata(meta).ss_tag_frequency as
        Record<string, Record<string, number>> | undefined;
      const total = Object.values(freq ?? {}).reduce(
        (n, d) => n + Object.values(d).reduce((a, b) => a + b, 0),
        0,
      );
      const tags = item.tags as [string, number][];
      expect(tags.reduce((n, [, k]) => n + k, 0)).toBe(total);
      for (let i = 1; i < tags.length; i++) expect(tags[i - 1]![1]).toBeGreaterThanOrEqual(tags[i]![1]);
      expect(item.preview !== null).toBe(c.adapter === first);
    }
  }, 60_000);
});

describe('sdstudio list hypernetworks', () => {
  it('lists the .pt files of --hypernetwork-dir (sub-folders too) by the name a tag uses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sd-list-hn-'));
    dirs.push(dir);
    const hnDir = join(dir, 'hn');
    await mkdir(join(hnDir, 'sub'), { recursive: true });
    const files = casesOf('hypernetwork')
      .map((c) => c.file as string)
      .filter(Boolean);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) await copyFile(adapterPath(f), join(hnDir, 'sub', f));
    await writeFile(join(hnDir, 'not-a-hypernetwork.safetensors'), '');
    const r = await runCli(
      ['list', 'hypernetworks', '--data-dir', dir, '--hypernetwork-dir', hnDir, '--json'],
      dir,
    );
    expect(r.code, r.stderr).toBe(0);
    const names = r.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { name: string }).name);
    expect(names.sort()).toEqual(files.map((f) => f.replace(/\.pt$/, '')).sort());
  }, 60_000);
});
