/**
 * LoRAs as low-rank branches fed to the UNet and text-encoder graphs instead of patched weights
 * (docs/performance.md, "Session 7"). For a plain LoRA module on a Linear or 1×1 conv layer,
 * A1111's patched weight W + ((up·down)·scale)·m gives y = W·x + up'·(down·x) with up' = up·scale·m:
 * the UNet graph gets the two thin factors as inputs (onnx/ops.ts `withLowRankBranch`), so its
 * weights stay the checkpoint's — placed in place, optimised and saved once per set of touched
 * layers, quantized once for int8 — and a LoRA set costs ≈ (in + out)·r floats per layer, not a
 * patched copy of the layer. Several networks on one layer stack along the rank axis.
 *
 * Everything else keeps A1111's patched path (adapters/lora.ts): OpenCLIP's packed attention,
 * LoCon 3×3, LoHa, LoKr, IA3, full diffs, CP `lora_mid`, `dyn_dim`,
 * and any layer one of those touches (its modules apply in prompt order, so the whole layer is
 * patched). A module whose multiplier is 0 adds exactly nothing and is left out, so `<lora:x:0>`
 * runs the plain graph.
 */
import type { LowRankBranch } from '../runtime/tensors.js';
import type { ActiveNetwork } from './lora.js';
import { calcScale, multiplierKind, type NetworkModule } from './lora-modules.js';

/** The graphs that take branches, by key prefix: SD 1.x's UNet and CLIP text model. */
export const BRANCH_PREFIXES = {
  unet: 'model.diffusion_model.',
  text: 'cond_stage_model.transformer.text_model.',
} as const;

/** Whether `m` on its layer can run as a branch of a graph whose layers start with one of `prefixes`. */
function branchable(m: NetworkModule, prefixes: readonly string[], dynDim: number | null): boolean {
  const key = m.layer.weightKey;
  const shape = m.layer.shape;
  if (!key || !prefixes.some((p) => key.startsWith(p)) || !shape || m.sdKey !== m.layer.name) return false;
  const linear = m.layer.type === 'Linear' && shape.length === 2;
  const pointwise = m.layer.type === 'Conv2d' && shape.length === 4 && shape[2] === 1 && shape[3] === 1;
  if (!(linear || pointwise)) return false;
  if (m.moduleClass !== 'NetworkModuleLora' || m.w['lora_mid.weight'] || m.w['bias'] || dynDim !== null)
    return false;
  const up = m.w['lora_up.weight'];
  const down = m.w['lora_down.weight'];
  if (!up || !down) return false;
  const [o, i] = [shape[0]!, shape[1]!];
  const r = down.shape[0]!;
  // Shapes that do not fit are the patched path's to report (as A1111 does).
  return up.shape[0] === o && up.data.length === o * r && down.data.length === r * i && r > 0;
}

/**
 * Split the active networks into graph branches and what still has to be patched. `prefixes`: the
 * key prefixes (with their dot) of the graphs that take branches, e.g. `model.diffusion_model.`
 * and the CLIP text model's `cond_stage_model.transformer.text_model.`.
 */
export function splitLowRankBranches(
  active: readonly ActiveNetwork[],
  prefixes: readonly string[],
): { branches: Map<string, LowRankBranch>; patched: ActiveNetwork[] } {
  // A layer is a branch only if every module on it is.
  const byLayer = new Map<string, { a: ActiveNetwork; m: NetworkModule }[]>();
  const patchedLayers = new Set<string>();
  for (const a of active) {
    for (const m of a.network.modules.values()) {
      const key = m.layer.weightKey;
      if (!key) continue;
      if (!branchable(m, prefixes, a.dynDim)) patchedLayers.add(key);
      let l = byLayer.get(key);
      if (!l) byLayer.set(key, (l = []));
      l.push({ a, m });
    }
  }
  const branches = new Map<string, LowRankBranch>();
  const taken = new Set<NetworkModule>();
  for (const [key, entries] of byLayer) {
    if (patchedLayers.has(key)) continue;
    for (const e of entries) taken.add(e.m);
    const mult = (e: { a: ActiveNetwork; m: NetworkModule }) =>
      multiplierKind(e.m.sdKey) === 'te' ? e.a.te : e.a.unet;
    const used = entries.filter((e) => mult(e) !== 0);
    if (used.length === 0) continue;
    const [o, i] = [entries[0]!.m.layer.shape![0]!, entries[0]!.m.layer.shape![1]!];
    const rank = used.reduce((n, e) => n + e.m.w['lora_down.weight']!.shape[0]!, 0);
    // kohya's layout is the graph's (down [r, in], up [out, r]): one network's down is used as
    // stored; up carries the scale; several networks stack their ranks.
    const down = used.length === 1 ? used[0]!.m.w['lora_down.weight']!.data : new Float32Array(rank * i);
    const up = new Float32Array(o * rank);
    let r0 = 0;
    for (const e of used) {
      const d = e.m.w['lora_down.weight']!.data;
      const u = e.m.w['lora_up.weight']!.data;
      const r = d.length / i;
      // A1111 rounds the scale to float32 before the product; the multiplier follows.
      const s = Math.fround(Math.fround(calcScale(e.m)) * mult(e));
      if (down !== d) down.set(d, r0 * i);
      if (r === rank) for (let n = 0; n < u.length; n++) up[n] = u[n]! * s;
      else for (let c = 0; c < o; c++) for (let k = 0; k < r; k++) up[c * rank + r0 + k] = u[c * r + k]! * s;
      r0 += r;
    }
    branches.set(key.replace(/\.weight$/, ''), { inF: i, outF: o, rank, down, up });
  }
  // The networks without the modules that became branches (or were left out at multiplier 0).
  const patched = active.map((a) => ({
    ...a,
    network: {
      ...a.network,
      modules: new Map([...a.network.modules].filter(([, m]) => !taken.has(m))),
    },
  }));
  return { branches, patched };
}

/** Bytes the branches hold (both factors, float32). */
export function branchBytes(branches: ReadonlyMap<string, LowRankBranch>): number {
  let n = 0;
  for (const b of branches.values()) n += (b.down.length + b.up.length) * 4;
  return n;
}
