/**
 * Does a UNet optimised once at level 'all' (NCHWc convolutions) and saved by onnxruntime
 * (`optimizedModelFilePath`, initializers in an external file) load fast and run as fast later?
 *
 *   npx tsx bench/experiments/saved-optimized.ts --phase save     # create at 'all', save
 *   npx tsx bench/experiments/saved-optimized.ts --phase load     # load the saved model
 */
import { mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { openModel } from '../../src/formats/open.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import type { OptLevel } from '../../src/runtime/session.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { median, peakRssMb, timed } from '../measure.js';
import { ensureRandomSd15 } from '../random-sd15.js';

const { values } = parseArgs({
  options: {
    phase: { type: 'string', default: 'save' },
    level: { type: 'string', default: 'disabled' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: join(tmpdir(), 'sdstudio-optimized') },
  },
});
const dir = values.dir!;
mkdirSync(dir, { recursive: true });
const saved = join(dir, 'unet.onnx');
const threads = 2;

const src = await openModel(await ensureRandomSd15());
const cfg = sd1ConfigFromTensors(src);
let session: ort.InferenceSession;
if (values.phase === 'save') {
  const prepared = await prepareModel(buildUNetGraph(src, cfg.unet, {}), 'experiment-unet');
  const created = await timed(() =>
    ort.InferenceSession.create(prepared.bytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      logSeverityLevel: 3,
      optimizedModelFilePath: saved,
      extra: {
        session: {
          model_external_initializers_file_folder_path: prepared.externalFolder,
          optimized_model_external_initializers_file_name: 'unet.weights',
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    }),
  );
  session = created.value;
  console.error(
    `save: create+save ${created.wall_s.toFixed(2)} s (cpu ${created.cpu_s.toFixed(2)}), ` +
      `model ${statSync(saved).size} B, weights ${statSync(join(dir, 'unet.weights')).size} B, peak RSS ${peakRssMb().toFixed(0)} MB`,
  );
} else {
  const created = await timed(() =>
    ort.InferenceSession.create(saved, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: values.level as OptLevel,
      intraOpNumThreads: threads,
      logSeverityLevel: 3,
      ...(process.env.SDSTUDIO_ORT_PROFILE === '1'
        ? { enableProfiling: true, profileFilePrefix: join(dir, 'profile') }
        : {}),
    }),
  );
  session = created.value;
  console.error(
    `load (${values.level}): create ${created.wall_s.toFixed(2)} s (cpu ${created.cpu_s.toFixed(2)}), ` +
      `RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`,
  );
}
const rand = (n: number, seed: number) => {
  const a = new Float32Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) a[i] = ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1) * 2;
  return a;
};
const feeds = {
  x: new ort.Tensor('float32', rand(2 * 4 * 64 * 64, 1), [2, 4, 64, 64]),
  timesteps: new ort.Tensor('float32', new Float32Array(2).fill(500), [2]),
  context: new ort.Tensor('float32', rand(2 * 77 * 768, 2), [2, 77, 768]),
};
const ts: number[] = [];
let first: Float32Array | undefined;
for (let i = 0; i < 2 + Number(values.runs); i++) {
  const t = await timed(() => session.run(feeds));
  const out = Object.values(t.value)[0]!.data as Float32Array;
  if (!first) first = out.slice();
  if (i >= 2) ts.push(t.wall_s);
  console.error(
    `run ${i}: ${t.wall_s.toFixed(2)} s (cpu ${t.cpu_s.toFixed(2)}) peak ${peakRssMb().toFixed(0)} MB`,
  );
}
let s = 0;
for (let i = 0; i < first!.length; i++) s += first![i]!;
console.error(
  `median ${median(ts).toFixed(2)} s; output checksum ${s.toFixed(4)} first ${first![0]} ${first![12345]}`,
);
await session.release();
await src.close();
