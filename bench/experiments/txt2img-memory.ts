/**
 * Where a 512² txt2img's resident memory goes, stage by stage, through the engine's front
 * (loadSd1: text encode ×2 → `--steps` UNet steps at batch 2 → VAE decode), for one configuration
 * per process: RSS (anonymous / file-backed) after each stage and the process's peak.
 *
 *   npx tsx bench/experiments/txt2img-memory.ts [--levels 2] [--vae-arena on|off] [--unet-arena on|off]
 *     [--unet-pattern on|off] [--steps 2]
 */
import { parseArgs } from 'node:util';
import { loadSd1 } from '../../src/runtime/sd1.js';
import { ensureRandomSd15 } from '../random-sd15.js';
import { peakRssMb, rssBreakdownMb } from '../measure.js';

const { values } = parseArgs({
  options: {
    levels: { type: 'string', default: '2' },
    'vae-arena': { type: 'string', default: 'on' },
    'unet-arena': { type: 'string', default: 'on' },
    'unet-pattern': { type: 'string', default: 'on' },
    steps: { type: 'string', default: '2' },
  },
});
const on = (v: string | undefined) => v !== 'off';
const ckpt = await ensureRandomSd15();
const model = await loadSd1(ckpt, {
  winogradLevels: Number(values.levels),
  partSessions: {
    vae: { memArena: on(values['vae-arena']) },
    unet: { memArena: on(values['unet-arena']), memPattern: on(values['unet-pattern']) },
  },
  onNotice: (m) => console.error(m),
});
const report = (stage: string, t0: number) => {
  const r = rssBreakdownMb();
  const split = r ? `anon ${r.anon_mb.toFixed(0)} MB  file ${r.file_mb.toFixed(0)} MB  ` : '';
  console.log(
    `${stage.padEnd(14)} ${((performance.now() - t0) / 1000).toFixed(2).padStart(6)} s  ` +
      `${split}peak ${peakRssMb().toFixed(0)} MB`,
  );
};
const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
let t = performance.now();
await model.open(['text', 'unet', 'vaeDecoder']);
report('open', t);
t = performance.now();
const ids = Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 10 ? 320 + i : 49407));
const cond = await model.encodeIds(ids, 1);
const context = new Float32Array(cond.data.length * 2);
context.set(cond.data);
context.set(cond.data, cond.data.length);
report('text', t);
let latent = wave(4 * 64 * 64, 0.37);
for (let i = 0; i < Number(values.steps); i++) {
  t = performance.now();
  const x = new Float32Array(latent.length * 2);
  x.set(latent);
  x.set(latent, latent.length);
  const eps = await model.unet({
    x: { data: x, dims: [2, 4, 64, 64] },
    t: { data: new Float32Array([900 - i, 900 - i]), dims: [2] },
    context: { data: context, dims: [2, 77, 768] },
  });
  latent = eps.data.slice(0, latent.length);
  report(`unet step ${i + 1}`, t);
}
for (let i = 0; i < 2; i++) {
  t = performance.now();
  await model.vaeDecode({ data: latent, dims: [1, 4, 64, 64] });
  report(`vae decode ${i + 1}`, t);
}
await model.release();
