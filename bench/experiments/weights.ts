/**
 * How the UNet's weights reach onnxruntime, and what session creation spends its time on.
 * Variants (combine with "+"):
 *   inplace      external data pointing straight into the .safetensors checkpoint
 *                (offsets only 8-byte aligned, as in every safetensors file) — the engine's default
 *   aligned4k    the same bytes copied once into a file with every tensor at a 4 KiB-aligned offset
 *   fusedmatmul  graph rewrite: Linear as com.microsoft FusedMatMul(transB=1) on the [out, in]
 *                weight instead of MatMul(x, Transpose(W)), so no transposed copy is folded at creation
 *                (the engine emits FusedMatMul itself since 1930225; the rewrite then finds nothing)
 * Each variant: one process, session creation (wall, CPU, RSS after), one run at a small latent
 * (weights that load lazily show up here), peak RSS.
 *
 *   npx tsx bench/experiments/weights.ts --variants inplace,aligned4k,inplace+fusedmatmul [--opt extended]
 */
import { existsSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { openModel } from '../../src/formats/open.js';
import type { TensorSource } from '../../src/formats/tensor.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { MS_DOMAIN, type GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel, OnnxDataType, type TensorProtoObj } from '../../src/onnx/proto.js';
import type { OptLevel } from '../../src/runtime/session.js';
import { peakRssMb, runChild, timed } from '../measure.js';
import { benchCacheDir, ensureRandomSd15, RANDOM_SD15_VERSION } from '../random-sd15.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string' },
    variants: { type: 'string', default: 'inplace,aligned4k,inplace+fusedmatmul' },
    opt: { type: 'string', default: 'extended' },
    shape: { type: 'string', default: '1,16,16' },
  },
});

const PAGE = 4096;

/** Copy every param of `g` into one file, each at a 4 KiB-aligned offset (written once, cached). */
async function alignedCopy(
  src: TensorSource,
  keys: string[],
): Promise<{ path: string; index: Map<string, number> }> {
  const path = join(benchCacheDir(), `unet-aligned4k-${RANDOM_SD15_VERSION}.bin`);
  const index = new Map<string, number>();
  let pos = 0;
  for (const k of keys) {
    index.set(k, pos);
    pos = Math.ceil((pos + src.location(k)!.length) / PAGE) * PAGE;
  }
  if (!existsSync(path)) {
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w');
    for (const k of keys) {
      const t = await src.read(k);
      await fh.write(t.data, 0, t.data.byteLength, index.get(k)!);
    }
    await fh.close();
    await rename(tmp, path);
  }
  return { path, index };
}

/** MatMul(x, Transpose(W, [1,0])) with W a param → FusedMatMul(x, W, transB=1). */
function useFusedMatMul(g: GraphBuilder): number {
  const paramNames = new Set([...g.params.values()].map((p) => p.name));
  const transposes = new Map<string, string>(); // transpose output -> param
  for (const n of g.nodes) {
    const perm = n.attribute.find((a) => a.name === 'perm')?.ints;
    if (n.opType === 'Transpose' && paramNames.has(n.input[0]!) && perm?.join(',') === '1,0') {
      transposes.set(n.output[0]!, n.input[0]!);
    }
  }
  let rewritten = 0;
  const used = new Set<string>();
  for (const n of g.nodes) {
    if (n.opType === 'MatMul' && transposes.has(n.input[1]!)) {
      used.add(n.input[1]!);
      n.opType = 'FusedMatMul';
      n.domain = MS_DOMAIN;
      n.input[1] = transposes.get(n.input[1]!)!;
      n.attribute = [{ name: 'transB', type: 2, i: 1 }];
      rewritten++;
    }
  }
  const stillUsed = new Set(g.nodes.flatMap((n) => (n.opType === 'Transpose' ? [] : n.input)));
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (n.opType === 'Transpose' && used.has(n.output[0]!) && !stillUsed.has(n.output[0]!))
      g.nodes.splice(i, 1);
  }
  return rewritten;
}

interface Result {
  variant: string;
  create_s: number;
  create_cpu_s: number;
  rss_after_create_mb: number;
  first_run_s: number;
  second_run_s: number;
  peak_rss_mb: number;
}

async function runVariant(variant: string): Promise<Result> {
  const flags = new Set(variant.split('+'));
  const src = await openModel(await ensureRandomSd15());
  const cfg = sd1ConfigFromTensors(src);
  const g = buildUNetGraph(src, cfg.unet, {});
  if (flags.has('fusedmatmul')) process.stderr.write(`[${variant}] ${useFusedMatMul(g)} MatMuls rewritten\n`);
  const params = [...g.params.values()];
  const ext = (
    p: { name: string; dims: number[] },
    location: string,
    offset: number,
    length: number,
  ): TensorProtoObj => ({
    name: p.name,
    dims: p.dims,
    dataType: OnnxDataType.FLOAT,
    dataLocation: 1,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  });
  let folder: string;
  let bytes: Uint8Array;
  if (flags.has('aligned4k')) {
    const { path, index } = await alignedCopy(src, [...new Set(params.map((p) => p.key))].sort());
    folder = dirname(path);
    bytes = encodeModel(
      g.toModel((p) => ext(p, basename(path), index.get(p.key)!, src.location(p.key)!.length)),
    );
  } else {
    folder = dirname(src.path);
    bytes = encodeModel(
      g.toModel((p) => ext(p, basename(src.path), src.location(p.key)!.offset, src.location(p.key)!.length)),
    );
  }
  const created = await timed(() =>
    ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: values.opt as OptLevel,
      logSeverityLevel: 3,
      extra: { session: { model_external_initializers_file_folder_path: folder } },
    }),
  );
  const rss_after_create_mb = process.memoryUsage().rss / 2 ** 20;
  process.stderr.write(
    `[${variant}] create ${created.wall_s.toFixed(2)} s (cpu ${created.cpu_s.toFixed(2)} s), RSS ${rss_after_create_mb.toFixed(0)} MB\n`,
  );
  const [B, H, W] = values.shape!.split(',').map(Number) as [number, number, number];
  const feeds = {
    x: new ort.Tensor('float32', new Float32Array(B * 4 * H * W).fill(0.5), [B, 4, H, W]),
    timesteps: new ort.Tensor('float32', new Float32Array(B).fill(500), [B]),
    context: new ort.Tensor('float32', new Float32Array(B * 77 * 768).fill(0.1), [B, 77, 768]),
  };
  const r1 = await timed(() => created.value.run(feeds));
  const r2 = await timed(() => created.value.run(feeds));
  process.stderr.write(
    `[${variant}] runs ${r1.wall_s.toFixed(2)} s, ${r2.wall_s.toFixed(2)} s, peak RSS ${peakRssMb().toFixed(0)} MB\n`,
  );
  await created.value.release();
  await src.close();
  return {
    variant,
    create_s: created.wall_s,
    create_cpu_s: created.cpu_s,
    rss_after_create_mb,
    first_run_s: r1.wall_s,
    second_run_s: r2.wall_s,
    peak_rss_mb: peakRssMb(),
  };
}

if (values.variant) {
  console.log(JSON.stringify(await runVariant(values.variant)));
} else {
  const script = new URL(import.meta.url).pathname;
  const results = values
    .variants!.split(',')
    .map((v) => runChild<Result>(script, ['--variant', v, '--opt', values.opt!, '--shape', values.shape!]));
  console.log(JSON.stringify(results));
}
