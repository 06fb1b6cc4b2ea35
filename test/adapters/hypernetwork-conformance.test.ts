/**
 * Hypernetworks against A1111's module: every `hypernetwork`, `hypernetwork_stack` and
 * `hypernetwork_attention` case of $SDSTUDIO_GOLDEN/adapters/cases.json. The attention case runs
 * the UNet's own cross-attention graph (models/blocks.ts) with the hypernetwork's keys/values
 * fed as separate inputs, as the UNet's `context_k`/`context_v` do.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  applyHypernetwork,
  applyHypernetworks,
  loadHypernetwork,
  type Hypernetwork,
} from '../../src/adapters/hypernetwork.js';
import type { F32Tensor } from '../../src/adapters/lora-modules.js';
import { crossAttention } from '../../src/models/blocks.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { createSession, f32, runSession } from '../../src/runtime/session.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { adapterPath, casesOf, closeAll, expectClose, openCached, type Tol } from './helpers.js';

afterAll(closeAll);

const loaded = new Map<string, Promise<Hypernetwork>>();
function hn(name: string): Promise<Hypernetwork> {
  const c = casesOf('hypernetwork').find((x) => x.name === name);
  if (!c) throw new Error(`cases.json names hypernetwork ${name} but has no case for it`);
  let p = loaded.get(name);
  if (!p) loaded.set(name, (p = loadHypernetwork(adapterPath(c.file as string))));
  return p;
}

async function goldenTensor(file: string, name: string): Promise<F32Tensor> {
  const s = await openCached(adapterPath(file));
  const info = s.info(name);
  if (!info) throw new Error(`${file} has no tensor ${name}`);
  return { shape: [...info.shape], data: await s.readFloat32(name) };
}

describe('hypernetwork', () => {
  for (const c of casesOf('hypernetwork')) {
    it(`${c.name}: fields and layout as A1111 loads them`, async () => {
      const h = await hn(c.name);
      const f = c.loaded_fields as Record<string, unknown>;
      const ours: Record<string, unknown> = {
        layer_structure: h.layerStructure,
        activation_func: h.activationFunc,
        weight_init: h.weightInit,
        add_layer_norm: h.addLayerNorm,
        use_dropout: h.useDropout,
        activate_output: h.activateOutput,
        last_layer_dropout: h.lastLayerDropout,
        dropout_structure: h.dropoutStructure,
        sizes: [...h.layers.keys()].sort((a, b) => a - b),
      };
      for (const k of Object.keys(f)) expect(ours[k], k).toEqual(f[k]);
      const seq = c.sequential_per_size_k as Record<string, string[]> | undefined;
      for (const [size, [text]] of Object.entries(seq ?? {})) {
        // torch's Sequential repr lists one module per line: compare the kinds in order.
        const kinds = [...text!.matchAll(/\(\d+\): (\w+)\(/g)].map((m) => m[1]);
        const ourKinds = h.layers
          .get(Number(size))![0]
          .map((l) =>
            l.kind === 'linear'
              ? 'Linear'
              : l.kind === 'layernorm'
                ? 'LayerNorm'
                : l.kind === 'dropout'
                  ? 'Dropout'
                  : 'act',
          );
        expect(ourKinds.map((k) => (k === 'act' ? 'act' : k))).toEqual(
          kinds.map((k) => (['Linear', 'LayerNorm', 'Dropout'].includes(k!) ? k : 'act')),
        );
      }
    });

    it(`${c.name}: k/v outputs`, async () => {
      const h = await hn(c.name);
      const tol = c.tolerance as Tol;
      const outputs = c.outputs as Record<
        string,
        { input: string; multiplier: number; k: string; v: string; unchanged?: boolean }
      >;
      expect(Object.keys(outputs).length).toBeGreaterThan(0);
      for (const [label, o] of Object.entries(outputs)) {
        const x = await goldenTensor(c.golden as string, o.input);
        const { k, v } = applyHypernetwork(h, x, x, o.multiplier);
        if (o.unchanged !== undefined) expect(k.data === x.data, `${label} unchanged`).toBe(o.unchanged);
        expectClose(`${label}.k`, k.data, (await goldenTensor(c.golden as string, o.k)).data, tol);
        expectClose(`${label}.v`, v.data, (await goldenTensor(c.golden as string, o.v)).data, tol);
      }
    });
  }
});

describe('hypernetwork_stack', () => {
  for (const c of casesOf('hypernetwork_stack')) {
    it(`${c.name}: networks applied in order, keys through the k MLPs, values through the v MLPs`, async () => {
      const nets = c.networks as [string, number][];
      const outputs = c.outputs as Record<string, [string, string]>;
      const tol = c.tolerance as Tol;
      const context = await goldenTensor(c.golden as string, 'context');
      const entries = Object.entries(outputs);
      expect(entries.length).toBeGreaterThan(0);
      for (const [label, [kName, vName]] of entries) {
        const order = /revers/.test(label) ? [...nets].reverse() : nets;
        const stack = await Promise.all(
          order.map(async ([n, m]) => ({ hypernetwork: await hn(n), multiplier: m })),
        );
        const { k, v } = applyHypernetworks(stack, context);
        expectClose(`${label}.k`, k.data, (await goldenTensor(c.golden as string, kName)).data, tol);
        expectClose(`${label}.v`, v.data, (await goldenTensor(c.golden as string, vName)).data, tol);
      }
    });
  }
});

/** Run the UNet's crossAttention graph for one layer on x with separate key/value inputs. */
async function attentionGraph(checkpoint: string, prefix: string, heads: number, dim: number, kvDim: number) {
  const ckpt = await openCached(adapterPath(checkpoint));
  const g = new GraphBuilder('attn', ckpt);
  const x = g.input('x', 'float32', ['batch', 'n', dim]);
  const k = g.input('k', 'float32', ['batch', 'm', kvDim]);
  const v = g.input('v', 'float32', ['batch', 'm', kvDim]);
  g.output(crossAttention(g, prefix.replace(/\.$/, ''), x, k, v, dim, kvDim, heads, 'plain'), 'out');
  const session = await createSession(await prepareModel(g, 'test-hn-attn'));
  return async (xs: F32Tensor, ks: F32Tensor, vs: F32Tensor) =>
    (
      await runSession(
        session,
        { x: f32(xs.data, xs.shape), k: f32(ks.data, ks.shape), v: f32(vs.data, vs.shape) },
        ['out'],
      )
    ).out.data;
}

describe('hypernetwork_attention', () => {
  for (const c of casesOf('hypernetwork_attention')) {
    it(`${c.name}: cross- and self-attention with and without the hypernetwork`, async () => {
      const tol = c.tolerance as Tol;
      const golden = c.golden as string;
      const inputs = c.inputs as { x: string; context: string };
      const outputs = c.outputs as { no_hypernetwork: string; with_hypernetwork: string };
      const h = await hn(c.hypernetwork as string);
      const mult = c.multiplier as number;
      const heads = c.heads as number;
      const dim = heads * (c.dim_head as number);
      const x = await goldenTensor(golden, inputs.x);
      const context = await goldenTensor(golden, inputs.context);
      const kvDim = context.shape[2]!;

      const cross = await attentionGraph(
        c.checkpoint as string,
        c.attention_weights_prefix as string,
        heads,
        dim,
        kvDim,
      );
      expectClose(
        'cross, none',
        await cross(x, context, context),
        (await goldenTensor(golden, outputs.no_hypernetwork)).data,
        tol,
      );
      const kv = applyHypernetwork(h, context, context, mult);
      expect(kv.k.data).not.toBe(context.data);
      expectClose(
        'cross, hn',
        await cross(x, kv.k, kv.v),
        (await goldenTensor(golden, outputs.with_hypernetwork)).data,
        tol,
      );

      const sa = c.self_attention as {
        weights_prefix: string;
        no_hypernetwork: string;
        with_hypernetwork: string;
      };
      const self = await attentionGraph(c.checkpoint as string, sa.weights_prefix, heads, dim, dim);
      expectClose(
        'self, none',
        await self(x, x, x),
        (await goldenTensor(golden, sa.no_hypernetwork)).data,
        tol,
      );
      const skv = applyHypernetwork(h, x, x, mult);
      expectClose(
        'self, hn',
        await self(x, skv.k, skv.v),
        (await goldenTensor(golden, sa.with_hypernetwork)).data,
        tol,
      );
    });
  }
});
