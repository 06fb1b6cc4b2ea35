/**
 * `<hypernet:…>` tags to files and multipliers (adapters/run-hypernetworks.ts) as A1111 v1.10.1's
 * ExtraNetworkHypernet reads them: file stems under the folder, prompt order, multiplier 1 when
 * omitted, the `sd_hypernetwork` setting's tag unless the prompt names it already; SD 1.x only.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hypernetworkHooks, resolveHypernetworkJob } from '../../src/adapters/run-hypernetworks.js';
import type { UNetInputs } from '../../src/runtime/tensors.js';
import { adapterPath, casesOf } from './helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dataDir(): Promise<{ dir: string; names: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'sd-hn-tags-'));
  dirs.push(dir);
  const hn = join(dir, 'models', 'hypernetworks');
  await mkdir(hn, { recursive: true });
  const files = casesOf('hypernetwork')
    .map((c) => c.file as string)
    .filter(Boolean)
    .slice(0, 2);
  expect(files).toHaveLength(2);
  for (const f of files) await copyFile(adapterPath(f), join(hn, f));
  return { dir, names: files.map((f) => f.replace(/\.pt$/, '')) };
}

describe('<hypernet:…> tags', () => {
  it('finds files by stem in prompt order with their multipliers; warns for unknown names and bad numbers', async () => {
    const { dir, names } = await dataDir();
    const [a, b] = names as [string, string];
    const warnings: string[] = [];
    const job = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: `x <hypernet:${b}:0.6> y <hypernet:nope> <hypernet:${a}> <hypernet:${a}:abc> <hypernet:${a}:>`,
      warn: (m) => warnings.push(m),
    });
    expect(job.specs.map((s) => [s.name, s.multiplier])).toEqual([
      [b, 0.6],
      [a, 1],
    ]);
    expect(job.specs[0]!.path).toBe(join(dir, 'models', 'hypernetworks', `${b}.pt`));
    expect(job.promptSuffix).toBe('');
    expect(warnings.join('\n')).toMatch(/Failed to find hypernetworks: nope/);
    expect(warnings.filter((w) => /is not a number/.test(w))).toHaveLength(2);
  });

  it('sd_hypernetwork adds <hypernet:NAME:1.0> unless the prompt names it; "None" is off', async () => {
    const { dir, names } = await dataDir();
    const [a, b] = names as [string, string];
    const none: string[] = [];
    const r0 = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: 'x',
      setting: 'None',
      warn: (m) => none.push(m),
    });
    expect(r0).toEqual({ specs: [], promptSuffix: '' });
    const r1 = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: `x <hypernet:${b}:0.5>`,
      setting: a,
      warn: () => {},
    });
    expect(r1.promptSuffix).toBe(`<hypernet:${a}:1.0>`);
    expect(r1.specs.map((s) => [s.name, s.multiplier])).toEqual([
      [b, 0.5],
      [a, 1],
    ]);
    const r2 = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: `x <hypernet:${a}:0.5>`,
      setting: a,
      warn: () => {},
    });
    expect(r2.promptSuffix).toBe('');
    expect(r2.specs.map((s) => s.multiplier)).toEqual([0.5]);
    const warned: string[] = [];
    const r3 = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: 'x',
      setting: 'gone',
      warn: (m) => warned.push(m),
    });
    expect(r3.specs).toEqual([]);
    expect(warned.join()).toMatch(/sd_hypernetwork.*gone/);
    expect(none).toEqual([]);
  });

  it('hooks: SD 1.x only ("not compatible" otherwise); zero multipliers are left out', async () => {
    const { dir, names } = await dataDir();
    const job = resolveHypernetworkJob({
      dataDir: dir,
      styledPrompt: `<hypernet:${names[0]}:0.7><hypernet:${names[1]}:0>`,
      warn: () => {},
    });
    const warnings: string[] = [];
    expect(await hypernetworkHooks(job.specs, 'sdxl', (m) => warnings.push(m))).toEqual([]);
    expect(warnings[0]).toMatch(/not compatible with this SDXL model/);
    const hooks = await hypernetworkHooks(job.specs, 'sd1', (m) => warnings.push(m));
    expect(hooks).toHaveLength(1);
    const inputs = {} as UNetInputs;
    await hooks[0]!.beforeUnet!(inputs);
    expect(inputs.hypernetworks!.stack.map((n) => n.multiplier)).toEqual([0.7]);
    expect(inputs.hypernetworks!.key).toContain(`${names[0]}.pt`);
    expect(await hypernetworkHooks([{ ...job.specs[0]!, multiplier: 0 }], 'sd1', () => {})).toEqual([]);
  });
});
