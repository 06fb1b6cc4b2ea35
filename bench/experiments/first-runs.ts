/**
 * Where a fresh UNet session's first step loses time: two sessions of the same model opened one
 * after the other in one process (512², batch 2, engine defaults), three steps each. If the
 * second session's first step is as slow as the first's, the cost belongs to the session (its
 * arena's fresh memory), not to the process or the page cache. Combine with
 * `SDSTUDIO_ORT_PROFILE=1 SDSTUDIO_ORT_PROFILE_FIRST=1 … network.ts` for the per-node excess.
 *
 *   npx tsx bench/experiments/first-runs.ts [--sessions 2] [--steps 3]
 */
import { parseArgs } from 'node:util';
import { loadSd1 } from '../../src/runtime/sd1.js';
import { ensureRandomSd15 } from '../random-sd15.js';
import { unet512Inputs } from './harness.js';

const { values } = parseArgs({
  options: { sessions: { type: 'string', default: '2' }, steps: { type: 'string', default: '3' } },
});
const ckpt = await ensureRandomSd15();
const inputs = unet512Inputs();
for (let s = 0; s < Number(values.sessions); s++) {
  const model = await loadSd1(ckpt, {});
  try {
    const t0 = performance.now();
    await model.open(['unet']);
    const open = ((performance.now() - t0) / 1000).toFixed(2);
    const steps: string[] = [];
    for (let i = 0; i < Number(values.steps); i++) {
      const t = performance.now();
      await model.unet(inputs);
      steps.push(((performance.now() - t) / 1000).toFixed(2));
    }
    console.log(`session ${s + 1}: open ${open} s, steps ${steps.join(', ')} s`);
  } finally {
    await model.release();
  }
}
