/**
 * What a hypernetwork adds to a UNet step at full SD 1.5 size (512², batch 2): the key/value MLPs of
 * models/hypernetwork-graph.ts on the inputs the UNet's attention layers give them — the text
 * context once (cross-attention) and, for a file with hidden-state widths, each self-attention's
 * input (4096 × 320, 1024 × 640, 256 × 1280 tokens per row). A random network with A1111's default
 * sizes (768, 320, 640, 1024, 1280) and layer structure [1, 2, 1], relu. Each width's pair of MLPs is
 * timed alone and scaled by how many attention layers of that width one step runs.
 *
 *   npx tsx bench/experiments/hypernet-cost.ts [--runs 3] [--threads 2]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import type { HnLayer } from '../../src/adapters/hypernetwork.js';
import { activationLayer } from '../../src/adapters/hypernetwork.js';
import { MemoryTensorSource } from '../../src/formats/memory.js';
import {
  HypernetWeightSource,
  hypernetGraph,
  hypernetMultiplierInput,
  hypernetTensors,
} from '../../src/models/hypernetwork-graph.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeWithParams, median, randomTensor } from './harness.js';

const { values } = parseArgs({ options: { runs: { type: 'string' }, threads: { type: 'string' } } });
const runs = Number(values.runs ?? 3);
const threads = Number(values.threads ?? 2);

function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2147483648 - 1) * 0.02;
  }
  return out;
}
const mlpOf = (w: number, seed: number): HnLayer[] => [
  { kind: 'linear', weight: { shape: [2 * w, w], data: rand(2 * w * w, seed) }, bias: rand(2 * w, seed + 1) },
  activationLayer('relu')!,
  { kind: 'linear', weight: { shape: [w, 2 * w], data: rand(2 * w * w, seed + 2) }, bias: rand(w, seed + 3) },
];
const widths = [768, 320, 640, 1024, 1280];
const layers = new Map(widths.map((w, i) => [w, [mlpOf(w, 10 * i), mlpOf(w, 10 * i + 5)] as const]));
const stack = [{ layers, multiplier: 1 }];
const weightsMb = [...hypernetTensors(stack).values()].reduce((n, t) => n + t.data.byteLength, 0) / 2 ** 20;

// Per 512² step at batch 2: tokens per row and how many attention layers read that width.
const sites = [
  { width: 768, tokens: 77, count: 1, what: 'cross-attention context (once for all 16 layers)' },
  { width: 320, tokens: 4096, count: 5, what: 'self-attention, 64×64 level' },
  { width: 640, tokens: 1024, count: 5, what: 'self-attention, 32×32 level' },
  { width: 1280, tokens: 256, count: 6, what: 'self-attention, 16×16 level + middle' },
];

let total = 0;
let totalCpu = 0;
for (const s of sites) {
  const src = new HypernetWeightSource(new MemoryTensorSource(new Map()), hypernetTensors(stack));
  const g = new GraphBuilder('hn', src);
  const hn = hypernetGraph(g, { key: 'bench', stack });
  const x = g.input('x', 'float32', [2, s.tokens, s.width]);
  const [k, v] = hn.apply(x, x, s.width)!;
  g.output(k, 'k');
  g.output(v, 'v');
  const feeds = {
    x: randomTensor([2, s.tokens, s.width]),
    [hypernetMultiplierInput(0)]: new ort.Tensor('float32', Float32Array.of(1), [1]),
  };
  const session = await ort.InferenceSession.create(await encodeWithParams(g, src), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  await session.run(feeds);
  const walls: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await session.run(feeds);
    walls.push((performance.now() - t0) / 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  await session.release();
  const t = { median_s: median(walls) };
  const cpuPerRun = (cpu.user + cpu.system) / 1e6 / runs;
  total += t.median_s * s.count;
  totalCpu += cpuPerRun * s.count;
  const macs = 2 * 2 * s.tokens * 4 * s.width * s.width;
  process.stdout.write(
    `${s.what.padEnd(52)} ${s.width}: ${t.median_s.toFixed(3)} s wall (${cpuPerRun.toFixed(2)} CPU s, ` +
      `${(macs / 1e9).toFixed(2)} GMAC) × ${s.count}\n`,
  );
}
process.stdout.write(
  `hypernetwork weights ${weightsMb.toFixed(0)} MB; added per 512² batch-2 step: ${total.toFixed(2)} s wall, ` +
    `${totalCpu.toFixed(2)} CPU s (cross-attention only: the 768 row)\n`,
);
