/**
 * The full-size random SD 1.5 UNet (512², batch 2) built two ways, both loaded as the engine loads
 * them (level 'all', optimised once and saved in the weights cache) and stepped alternately in one
 * process, so the VM's drift hits both alike. `--a` and `--b` are loadSd1 options as JSON.
 *
 *   npx tsx bench/experiments/unet-ab.ts --a '{"winogradLevels":0}' --b '{"winogradLevels":2}' [--runs 5]
 *   npx tsx bench/experiments/unet-ab.ts --a '{"optLevel":"extended"}' --b '{}'
 */
import { parseArgs } from 'node:util';
import { loadSd1, type Sd1LoadOptions, type TensorF32 } from '../../src/runtime/sd1.js';
import { median, unet512Inputs } from './harness.js';
import { ensureRandomSd15 } from '../random-sd15.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string', default: '{}' },
    b: { type: 'string', default: '{}' },
    runs: { type: 'string', default: '5' },
  },
});
const ckpt = await ensureRandomSd15();
const inputs = unet512Inputs();
const models = {
  [`a ${values.a}`]: await loadSd1(ckpt, {
    ...(JSON.parse(values.a!) as Sd1LoadOptions),
    onNotice: console.error,
  }),
  [`b ${values.b}`]: await loadSd1(ckpt, {
    ...(JSON.parse(values.b!) as Sd1LoadOptions),
    onNotice: console.error,
  }),
};
const outs: Record<string, TensorF32> = {};
for (const [name, m] of Object.entries(models)) {
  const t = performance.now();
  await m.open(['unet']);
  outs[name] = await m.unet(inputs); // warm-up
  console.error(`${name}: open + first step ${((performance.now() - t) / 1000).toFixed(1)} s`);
}
const [a, b] = Object.values(outs) as [TensorF32, TensorF32];
let diff = 0;
let peak = 0;
for (let i = 0; i < a.data.length; i++) {
  diff = Math.max(diff, Math.abs(a.data[i]! - b.data[i]!));
  peak = Math.max(peak, Math.abs(a.data[i]!));
}
console.log(`eps max |difference| ${diff.toExponential(2)} (max |eps| ${peak.toFixed(2)})`);
const times: Record<string, number[]> = {};
for (let r = 0; r < Number(values.runs); r++) {
  for (const [name, m] of Object.entries(models)) {
    const t = performance.now();
    await m.unet(inputs);
    (times[name] ??= []).push((performance.now() - t) / 1000);
  }
}
for (const [name, t] of Object.entries(times)) {
  console.log(`${name}: median ${median(t).toFixed(2)} s/step  (${t.map((s) => s.toFixed(2)).join(', ')})`);
}
const [ta, tb] = Object.values(times) as [number[], number[]];
const ratios = ta.map((x, i) => tb[i]! / x).sort((p, q) => p - q);
console.log(
  `b / a per alternating pair: median ${median(ratios).toFixed(3)} (${ratios.map((r) => r.toFixed(3)).join(', ')})`,
);
for (const m of Object.values(models)) await m.release();
