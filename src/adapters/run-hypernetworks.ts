/**
 * What the job runner does for `<hypernet:name:m>` tags, as A1111 v1.10.1's
 * `extra_networks_hypernet.py` + `load_hypernetworks`: the (styled) prompt's tags name files in
 * models/hypernetworks (`--hypernetwork-dir`) by file stem, in prompt order, multiplier 1 when
 * omitted; the `sd_hypernetwork` setting adds one to every prompt as `<hypernet:NAME:1.0>`. The
 * loaded networks reach the UNet through a per-step hook (`UNetInputs.hypernetworks`), which
 * selects the UNet graph variant that runs their MLPs on the attention keys/values.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { UnetHypernetworks } from '../models/hypernetwork-graph.js';
import type { ModelFamily } from '../models/config.js';
import type { UnetStepHook } from '../runtime/diffusion-model.js';
import { parseExtraNetworks } from '../prompt/extra-networks.js';
import { loadHypernetwork } from './hypernetwork.js';
import { listHypernetworkFiles } from './listing.js';

export interface HypernetworkSpec {
  /** The name the prompt used (the file stem). */
  name: string;
  path: string;
  multiplier: number;
}

/** `--hypernetwork-dir` (A1111's flag), else `<data-dir>/models/hypernetworks`. */
export function hypernetworkDir(dataDir: string, dir?: string): string {
  return dir ?? join(dataDir, 'models', 'hypernetworks');
}

/** A1111's `shared.hypernetworks`: file stem → path (every .pt in the tree, "None" excluded; later files win). */
export function hypernetworkTable(dir: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const f of listHypernetworkFiles(dir)) if (f.name !== 'None') map.set(f.name, f.path);
  return map;
}

export interface HypernetworkJobOptions {
  dataDir: string;
  hypernetworkDir?: string;
  /** The prompt after styles (tags in styles count, as in A1111). */
  styledPrompt: string;
  /** The `sd_hypernetwork` setting ("None" or absent = off). */
  setting?: unknown;
  warn: (message: string) => void;
}

export interface HypernetworkJob {
  specs: HypernetworkSpec[];
  /** The tag the `sd_hypernetwork` setting adds to the prompt ('' when none). */
  promptSuffix: string;
}

/** The hypernetworks a job's prompt names (files found, multipliers parsed); nothing is loaded. */
export function resolveHypernetworkJob(opts: HypernetworkJobOptions): HypernetworkJob {
  const tags = parseExtraNetworks(opts.styledPrompt).networks.filter((n) => n.name === 'hypernet');
  const setting = typeof opts.setting === 'string' && opts.setting !== 'None' ? opts.setting : '';
  if (tags.length === 0 && !setting) return { specs: [], promptSuffix: '' };
  const dir = hypernetworkDir(opts.dataDir, opts.hypernetworkDir);
  const table = hypernetworkTable(dir);
  const wanted = tags.map((t) => ({ items: t.items }));
  let promptSuffix = '';
  if (setting) {
    if (!table.has(setting))
      opts.warn(`the sd_hypernetwork setting names "${setting}", which is not in ${dir}`);
    else if (!tags.some((t) => t.items[0] === setting)) {
      promptSuffix = `<hypernet:${setting}:1.0>`;
      wanted.push({ items: [setting, '1.0'] });
    }
  }
  const specs: HypernetworkSpec[] = [];
  const missing: string[] = [];
  for (const { items } of wanted) {
    const name = items[0] ?? '';
    // Python's float(): an empty text is no number (JS Number('') would be 0).
    const multiplier = items.length > 1 ? (items[1]!.trim() === '' ? NaN : Number(items[1])) : 1;
    if (!Number.isFinite(multiplier)) {
      opts.warn(`<hypernet:${items.join(':')}>: the multiplier "${items[1]}" is not a number; tag skipped`);
      continue;
    }
    const path = table.get(name);
    if (!path) missing.push(name);
    else specs.push({ name, path, multiplier });
  }
  if (missing.length)
    opts.warn(`Failed to find hypernetworks: ${missing.join(', ')} (looked for *.pt file names in ${dir})`);
  return { specs, promptSuffix };
}

/**
 * Load the networks for a model and return the UNet hooks that apply them. Only SD 1.x takes them
 * (the files are trained on its attention widths): on other families each is a warning and skipped.
 * A zero multiplier leaves the network out (x + mlp(x)·0 = x), so `<hypernet:x:0>` runs the plain UNet.
 */
export async function hypernetworkHooks(
  specs: readonly HypernetworkSpec[],
  family: ModelFamily,
  warn: (message: string) => void,
): Promise<UnetStepHook[]> {
  if (specs.length === 0) return [];
  if (family !== 'sd1') {
    warn(
      `hypernetwork${specs.length > 1 ? 's' : ''} ${specs.map((s) => s.name).join(', ')} not compatible ` +
        `with this ${family.toUpperCase()} model (hypernetworks are for SD 1.x); skipped`,
    );
    return [];
  }
  const stack: UnetHypernetworks['stack'][number][] = [];
  const ids: string[] = [];
  for (const s of specs) {
    if (s.multiplier === 0) continue;
    const hn = await loadHypernetwork(s.path, s.name);
    const st = await stat(s.path);
    ids.push(`${s.path}|${st.size}|${st.mtimeMs}`);
    stack.push({ layers: hn.layers, multiplier: s.multiplier });
  }
  if (stack.length === 0) return [];
  const hypernetworks: UnetHypernetworks = { key: ids.join(','), stack };
  return [
    {
      beforeUnet: (inputs) => {
        inputs.hypernetworks = hypernetworks;
      },
    },
  ];
}
