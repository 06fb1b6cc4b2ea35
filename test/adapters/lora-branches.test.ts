/**
 * LoRA as low-rank UNet / text-encoder graph branches (adapters/lora-branches.ts) against the patched path
 * that the conformance suite checks against A1111: for every `lora_apply` / `lora_combo` case of
 * $SDSTUDIO_GOLDEN/adapters, the branches rebuild the patched weights to the case's tolerance, the
 * layers left to patching are patched exactly as before, and the UNet with branches gives the same
 * eps and text-encoder output as the patched weights give (fp32 and the channels-last graph). `<lora:x:0>` leaves
 * the UNet's graph and weights alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BRANCH_PREFIXES } from '../../src/adapters/lora-branches.js';
import {
  activateLoras,
  listLoraFiles,
  resolveLoraTags,
  type LoraSpec,
} from '../../src/adapters/lora-library.js';
import { loraTagsOf } from '../../src/adapters/run-loras.js';
import { PatchedTensorSource } from '../../src/adapters/patched-source.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { UNetPrecision } from '../../src/models/unet.js';
import { loadSd1 } from '../../src/runtime/sd1.js';
import type { LowRankBranches, TensorF32 } from '../../src/runtime/tensors.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { adapterCases, adapterPath, adaptersDir, expectClose, type Tol } from './helpers.js';

const PREFIXES: string[] = Object.values(BRANCH_PREFIXES);
const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-lora-branches-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const cases = adapterCases().filter(
  (c) => (c.kind === 'lora_apply' || c.kind === 'lora_combo') && (c.prompt_tag ?? c.prompt_tags),
);

async function specsOf(prompt: string): Promise<LoraSpec[]> {
  return resolveLoraTags(loraTagsOf(prompt), await listLoraFiles([adaptersDir()]));
}

const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

/** UNet eps and the text encoder's last hidden states of a model. */
async function outputs(
  source: TensorSource,
  precision: UNetPrecision,
  lowRankBranches?: LowRankBranches,
): Promise<{ eps: TensorF32; text: TensorF32 }> {
  const m = await loadSd1(source, { unetPrecision: precision, cacheDir, threads: 2, lowRankBranches });
  try {
    const [h, w] = [16, 16];
    const cd = m.config.unet.contextDim;
    const eps = await m.unet({
      x: { data: wave(2 * 4 * h * w, 1), dims: [2, 4, h, w] },
      t: { data: new Float32Array([10, 900]), dims: [2] },
      context: { data: wave(2 * 77 * cd, 0.7), dims: [2, 77, cd] },
    });
    const ids = Int32Array.from({ length: 77 }, (_, i) => (i * 37) % 100);
    return { eps, text: await m.encodeIds(ids, 1) };
  } finally {
    await m.release();
  }
}

describe('LoRA as low-rank UNet branches', () => {
  it('has cases to run', () => expect(cases.length).toBeGreaterThan(0));

  let withBranches = 0;
  for (const c of cases) {
    it(`${c.name}: branches + patches rebuild the patched weights; UNet and text encoder give the same outputs`, async () => {
      const ckpt = await openSafetensors(adapterPath(c.checkpoint as string));
      try {
        const specs = await specsOf((c.prompt_tag ?? c.prompt_tags) as string);
        const opts = { noHashCache: true };
        const patched = await activateLoras(ckpt, specs, opts);
        const split = await activateLoras(ckpt, specs, { ...opts, branchPrefixes: PREFIXES });
        expect(split.errorsComment).toBe(patched.errorsComment);
        expect(split.loraHashes).toBe(patched.loraHashes);
        const tol = ((c.tolerance as Record<string, Tol>).patched ?? { max_abs: 1e-5, rel_l2: 1e-6 }) as Tol;
        const all = new Set((patched.source as PatchedTensorSource).patchedKeys?.() ?? []);
        const rest = new Set(split.source instanceof PatchedTensorSource ? split.source.patchedKeys() : []);
        for (const [prefix, b] of split.branches) {
          const key = `${prefix}.weight`;
          expect(PREFIXES.some((p) => key.startsWith(p))).toBe(true);
          expect(rest.has(key), `${key} is both a branch and patched`).toBe(false);
          expect(all.has(key), `${key} is a branch but the patched path leaves it alone`).toBe(true);
          // W + up·down, the weight's [out, in].
          const w = Float32Array.from(await ckpt.readFloat32(key));
          for (let o = 0; o < b.outF; o++)
            for (let i = 0; i < b.inF; i++) {
              let s = 0;
              for (let r = 0; r < b.rank; r++) s += b.up[o * b.rank + r]! * b.down[r * b.inF + i]!;
              w[o * b.inF + i]! += s;
            }
          expectClose(key, w, await patched.source.readFloat32(key), tol);
        }
        // Every other patched layer is patched as before, bit for bit.
        for (const key of all) {
          if (split.branches.has(key.replace(/\.weight$/, ''))) continue;
          expect(rest.has(key), `${key} lost`).toBe(true);
          expect(await split.source.readFloat32(key)).toEqual(await patched.source.readFloat32(key));
        }
        if (split.branches.size === 0) return;
        withBranches++;
        // The channels-last graph (the int8 graph's layout) on the first such case only: time.
        for (const precision of withBranches === 1 ? (['fp32', 'nhwc'] as const) : (['fp32'] as const)) {
          const ref = await outputs(patched.source, precision);
          const ours = await outputs(split.source, precision, split.branches);
          const tolOut = { max_abs: 1e-4, rel_l2: 1e-5 };
          expectClose(`${c.name} eps (${precision})`, ours.eps.data, ref.eps.data, tolOut);
          expectClose(`${c.name} text (${precision})`, ours.text.data, ref.text.data, tolOut);
        }
      } finally {
        await ckpt.close();
      }
    }, 120_000);
  }

  it('ran the engine on at least one case with branches', () => expect(withBranches).toBeGreaterThan(0));

  it('leaves a network at multiplier 0 out: no branch, no patched transformer layer', async () => {
    const c = cases.find((x) => x.kind === 'lora_apply' && x.prompt_tag)!;
    const ckpt = await openSafetensors(adapterPath(c.checkpoint as string));
    try {
      const [spec] = await specsOf(c.prompt_tag as string);
      const act = await activateLoras(ckpt, [{ ...spec!, te: 0, unet: 0 }], {
        noHashCache: true,
        branchPrefixes: PREFIXES,
      });
      expect(act.branches.size).toBe(0);
      const keys = act.source instanceof PatchedTensorSource ? act.source.patchedKeys() : [];
      expect(keys.filter((k) => /\.(to_[qkv]|proj_in|proj_out|[qkv]_proj|fc[12])\./.test(k))).toEqual([]);
    } finally {
      await ckpt.close();
    }
  });
});
