/**
 * Hypernetworks against A1111's module: every `hypernetwork`, `hypernetwork_stack` and
 * `hypernetwork_attention` case of $SDSTUDIO_GOLDEN/adapters/cases.json. The attention case runs
 * the UNet's own cross-attention graph (models/blocks.ts) with the hypernetwork's keys/values
 * fed as separate inputs, and again with the hypernetwork's MLPs inside the graph as the UNet runs
 * them (models/hypernetwork-graph.ts); every activation's graph form is checked against the module.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  activationLayer,
  applyHypernetwork,
  applyHypernetworks,
  HYPERNETWORK_ACTIVATIONS,
  loadHypernetwork,
  type HnLayer,
  type Hypernetwork,
} from '../../src/adapters/hypernetwork.js';
import {
  HypernetWeightSource,
  hypernetGraph,
  hypernetMultiplierInput,
  hypernetTensors,
  type UnetHypernetwork,
} from '../../src/models/hypernetwork-graph.js';
import { MemoryTensorSource } from '../../src/formats/open.js';
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

/**
 * The layer through the UNet's own hypernetwork graph (models/hypernetwork-graph.ts): the MLPs run
 * inside the graph on the context (cross-attention) or on x itself (self-attention), the
 * multiplier is a graph input.
 */
async function hnAttentionGraph(
  checkpoint: string,
  prefix: string,
  heads: number,
  dim: number,
  kvDim: number,
  net: UnetHypernetwork,
  self: boolean,
) {
  const ckpt = await openCached(adapterPath(checkpoint));
  const stack = [net];
  const g = new GraphBuilder('attn', new HypernetWeightSource(ckpt, hypernetTensors(stack)));
  const hn = hypernetGraph(g, { key: 'test', stack });
  const x = g.input('x', 'float32', ['batch', 'n', dim]);
  const c = self ? x : g.input('context', 'float32', ['batch', 'm', kvDim]);
  const [k, v] = hn.apply(c, c, kvDim) ?? [c, c];
  g.output(crossAttention(g, prefix.replace(/\.$/, ''), x, k, v, dim, kvDim, heads, 'plain'), 'out');
  const session = await createSession(await prepareModel(g, 'test-hn-graph'));
  return async (xs: F32Tensor, cs: F32Tensor | null, m: number) =>
    (
      await runSession(
        session,
        {
          x: f32(xs.data, xs.shape),
          ...(cs ? { context: f32(cs.data, cs.shape) } : {}),
          [hypernetMultiplierInput(0)]: f32(Float32Array.of(m), [1]),
        },
        ['out'],
      )
    ).out.data;
}

describe('hypernetwork_attention through the UNet hypernetwork graph', () => {
  for (const c of casesOf('hypernetwork_attention')) {
    it(`${c.name}: cross- and self-attention with the MLPs in the graph`, async () => {
      const tol = c.tolerance as Tol;
      const golden = c.golden as string;
      const inputs = c.inputs as { x: string; context: string };
      const outputs = c.outputs as { no_hypernetwork: string; with_hypernetwork: string };
      const sa = c.self_attention as {
        weights_prefix: string;
        no_hypernetwork: string;
        with_hypernetwork: string;
      };
      const h = await hn(c.hypernetwork as string);
      const mult = c.multiplier as number;
      const heads = c.heads as number;
      const dim = heads * (c.dim_head as number);
      const x = await goldenTensor(golden, inputs.x);
      const context = await goldenTensor(golden, inputs.context);
      const kvDim = context.shape[2]!;
      const net = { layers: h.layers, multiplier: mult };
      const ck = c.checkpoint as string;
      const cross = await hnAttentionGraph(
        ck,
        c.attention_weights_prefix as string,
        heads,
        dim,
        kvDim,
        net,
        false,
      );
      const self = await hnAttentionGraph(ck, sa.weights_prefix, heads, dim, dim, net, true);
      const want = async (name: string) => (await goldenTensor(golden, name)).data;
      expectClose('cross, hn', await cross(x, context, mult), await want(outputs.with_hypernetwork), tol);
      expectClose('self, hn', await self(x, null, mult), await want(sa.with_hypernetwork), tol);
      // Multiplier 0 is x + mlp(x)·0: the layer without the network.
      expectClose('cross, m=0', await cross(x, context, 0), await want(outputs.no_hypernetwork), tol);
      expectClose('self, m=0', await self(x, null, 0), await want(sa.no_hypernetwork), tol);
    });
  }
});

describe('hypernetwork activations in the graph', () => {
  // A small MLP per activation (with LayerNorm, PReLU, as A1111 lays them out) against the module.
  const width = 8;
  let seed = 1;
  const rand = (n: number, s = 0.5) =>
    Float32Array.from({ length: n }, () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return (seed / 2 ** 31 - 0.5) * 2 * s;
    });
  const linearLayer = (o: number, i: number): HnLayer => ({
    kind: 'linear',
    weight: { shape: [o, i], data: rand(o * i, 1) },
    bias: rand(o, 0.5),
  });
  for (const name of [...HYPERNETWORK_ACTIVATIONS, 'prelu']) {
    it(`${name}: graph = module within float32 rounding`, async () => {
      const act: HnLayer =
        name === 'prelu' ? { kind: 'prelu', weight: Float32Array.of(0.3) } : activationLayer(name)!;
      expect(act).toBeDefined();
      const mlpOf = (): HnLayer[] => [
        linearLayer(2 * width, width),
        act,
        { kind: 'layernorm', weight: rand(2 * width, 1), bias: rand(2 * width), eps: 1e-5 },
        { kind: 'dropout', p: 0.3 },
        linearLayer(width, 2 * width),
        act,
      ];
      const layers = new Map([[width, [mlpOf(), mlpOf()] as [HnLayer[], HnLayer[]]]]);
      const h = { layers } as unknown as Hypernetwork;
      const x: F32Tensor = { shape: [2, 5, width], data: rand(2 * 5 * width, 4) };
      const stack = [{ layers, multiplier: 0.7 }];
      const g = new GraphBuilder(
        'hn',
        new HypernetWeightSource(new MemoryTensorSource(new Map()), hypernetTensors(stack)),
      );
      const graph = hypernetGraph(g, { key: name, stack });
      const xi = g.input('x', 'float32', ['b', 'n', width]);
      const [k, v] = graph.apply(xi, xi, width)!;
      g.output(k, 'k');
      g.output(v, 'v');
      const session = await createSession(await prepareModel(g, 'test-hn-act'));
      const r = await runSession(
        session,
        { x: f32(x.data, x.shape), [hypernetMultiplierInput(0)]: f32(Float32Array.of(0.7), [1]) },
        ['k', 'v'],
      );
      const ref = applyHypernetwork(h, x, x, 0.7);
      const tol = { max_abs: 2e-5, rel_l2: 2e-6 };
      expectClose(`${name}.k`, r.k.data, ref.k.data, tol);
      expectClose(`${name}.v`, r.v.data, ref.v.data, tol);
    });
  }
});
