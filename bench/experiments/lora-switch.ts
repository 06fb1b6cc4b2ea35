/**
 * What switching LoRA sets costs before the first step, at full SD 1.5 size: loading a random
 * full-coverage rank-32 kohya LoRA (every Linear/1×1 conv of the 16 transformers + the 12 text
 * encoder layers, as kohya's networks.lora trains them), matching it and computing the patched
 * weights (adapters/lora.ts), and how many bytes the patched overlay holds.
 *
 *   npx tsx bench/experiments/lora-switch.ts [--rank 32] [--js]
 *
 * --js keeps every product in JavaScript (the path small LoRAs take) to show what the
 * onnxruntime GEMM saves.
 */
import { parseArgs } from 'node:util';
import { matmulOptions } from '../../src/adapters/fast-matmul.js';
import { BRANCH_PREFIXES, branchBytes, splitLowRankBranches } from '../../src/adapters/lora-branches.js';
import { buildLayerTable } from '../../src/adapters/lora-keys.js';
import { applyNetworks, loadNetwork } from '../../src/adapters/lora.js';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import type { Tensor } from '../../src/formats/tensor.js';
import { ldmCheckpointLayout, SD15_ARCH } from '../ldm-layout.js';
import { makeTensor, NormalRng } from '../random-sd15.js';

const { values } = parseArgs({
  options: { rank: { type: 'string' }, js: { type: 'boolean' }, 'branches-only': { type: 'boolean' } },
});
const rank = Number(values.rank ?? 32);
if (values.js) matmulOptions.minMacsForOrt = Number.POSITIVE_INFINITY;

const layout = ldmCheckpointLayout(SD15_ARCH);
// The checkpoint: names and shapes of all tensors; data made on read (only patched layers are read).
const specs = new Map(layout.map((s) => [s.name, s]));
const base = {
  path: '<random sd15>',
  format: 'memory' as const,
  metadata: {},
  keys: () => [...specs.keys()],
  has: (k: string) => specs.has(k),
  info: (k: string) => {
    const s = specs.get(k);
    return s && { name: k, dtype: s.dtype, shape: [...s.shape] };
  },
  read: async (k: string) => makeTensor(specs.get(k)!, 1),
  readFloat32: async (k: string) => {
    const t = makeTensor(specs.get(k)!, 1);
    return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  },
  location: () => undefined,
  close: async () => undefined,
};

// Which layers kohya trains: Linear/Conv2d children of every SpatialTransformer, CLIP attention + MLP.
const targets = layout.filter(
  (s) =>
    s.name.endsWith('.weight') &&
    (s.shape.length === 2 || (s.shape.length === 4 && s.shape[2] === 1)) &&
    ((/^model\.diffusion_model\..*_blocks\.\d+\.1\.|^model\.diffusion_model\.middle_block\.1\./.test(
      s.name,
    ) &&
      /(proj_in|proj_out|to_[qkv]|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)\.weight$/.test(s.name)) ||
      /^cond_stage_model\.transformer\.text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/.test(
        s.name,
      )),
);
const rng = new NormalRng(7);
const loraTensors = new Map<string, Tensor>();
const f32 = (shape: number[], std: number): Tensor => {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  rng.fillNormal(v, 0, std);
  return { dtype: 'F32', shape, data: new Uint8Array(v.buffer) };
};
for (const s of targets) {
  const mod = s.name
    .replace(/^model\.diffusion_model\./, 'lora_unet_')
    .replace(/^cond_stage_model\.transformer\.text_model\./, 'lora_te_text_model_')
    .replace(/\.weight$/, '')
    .replace(/\./g, '_');
  const [out, inp] = s.shape as [number, number];
  const conv = s.shape.length === 4;
  loraTensors.set(`${mod}.lora_down.weight`, f32(conv ? [rank, inp, 1, 1] : [rank, inp], 0.01));
  loraTensors.set(`${mod}.lora_up.weight`, f32(conv ? [out, rank, 1, 1] : [out, rank], 0.01));
  loraTensors.set(`${mod}.alpha`, {
    dtype: 'F32',
    shape: [],
    data: new Uint8Array(new Float32Array([rank / 2]).buffer),
  });
}
const loraFile = new MemoryTensorSource(loraTensors, { path: 'random-lora.safetensors' });

const t0 = performance.now();
const table = buildLayerTable(base);
const t1 = performance.now();
const net = await loadNetwork(loraFile, table);
const t2 = performance.now();
const c2 = process.cpuUsage();
// --branches-only: skip the patched path (it holds 1.3 GB of patched weights).
const res = await applyNetworks(
  async (k) => ({ shape: [...specs.get(k)!.shape], data: await base.readFloat32(k) }),
  values['branches-only'] ? [] : [{ network: net, te: 1, unet: 1, dynDim: null }],
);
const t3 = performance.now();
const c3 = process.cpuUsage(c2);
// The branch path instead (adapters/lora-branches.ts): no base weight is read, nothing is patched.
const tb0 = performance.now();
const split = splitLowRankBranches(
  [{ network: net, te: 1, unet: 1, dynDim: null }],
  Object.values(BRANCH_PREFIXES),
);
const tb1 = performance.now();
let bytes = 0;
for (const t of res.patched.values()) bytes += t.data.byteLength;
// Reading the base weights is part of patching; measure it alone to separate it out.
const t4 = performance.now();
const c4 = process.cpuUsage();
for (const k of res.patched.keys()) await base.readFloat32(k);
const t5 = performance.now();
const c5 = process.cpuUsage(c4);
const cpuS = (c: NodeJS.CpuUsage) => +((c.user + c.system) / 1e6).toFixed(2);
console.log(
  JSON.stringify(
    {
      rank,
      products: values.js ? 'javascript' : 'onnxruntime GEMM above 4M multiply-adds',
      modules: net.modules.size,
      unmatched: net.unmatched.size,
      patched_tensors: res.patched.size,
      patched_mb: +(bytes / 2 ** 20).toFixed(1),
      layer_table_s: +((t1 - t0) / 1000).toFixed(3),
      load_match_s: +((t2 - t1) / 1000).toFixed(3),
      patch_s: +((t3 - t2) / 1000).toFixed(3),
      of_which_making_random_base_weights_s: +((t5 - t4) / 1000).toFixed(3),
      patch_cpu_s: cpuS(c3),
      branches: split.branches.size,
      branches_left_to_patch: [...split.patched[0]!.network.modules.keys()].length,
      branch_mb: +(branchBytes(split.branches) / 2 ** 20).toFixed(1),
      branch_split_s: +((tb1 - tb0) / 1000).toFixed(3),
      of_which_random_base_cpu_s: cpuS(c5),
    },
    null,
    1,
  ),
);
