/**
 * Measures the engine's graph/session choices on a full-size SD 1.5 architecture with random
 * weights (one configuration per process, so peak RSS is per configuration):
 *   npx tsx bench/engine-choices.ts --part unet --attention mha --opt extended --batch 2 --size 512 --runs 3
 * Writes the random checkpoint once to $SDSTUDIO_BENCH_CKPT (default /tmp/sdstudio-sd15-random.safetensors).
 */
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { SD15_CONFIG } from '../src/models/config.js';
import { writeRandomSd1Checkpoint } from '../src/models/random-weights.js';
import { loadSd1 } from '../src/runtime/sd1.js';
import type { OptLevel } from '../src/runtime/session.js';

const { values } = parseArgs({
  options: {
    part: { type: 'string', default: 'unet' },
    attention: { type: 'string', default: 'mha' },
    opt: { type: 'string', default: 'extended' },
    batch: { type: 'string', default: '2' },
    size: { type: 'string', default: '512' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string' },
  },
});
const ckpt = process.env.SDSTUDIO_BENCH_CKPT ?? '/tmp/sdstudio-sd15-random.safetensors';
if (!existsSync(ckpt)) await writeRandomSd1Checkpoint(ckpt, SD15_CONFIG);

const batch = Number(values.batch);
const size = Number(values.size);
const lat = size / 8;
const m = await loadSd1(ckpt, {
  config: SD15_CONFIG,
  attention: values.attention as 'mha' | 'plain',
  optLevel: values.opt as OptLevel,
  threads: values.threads ? Number(values.threads) : undefined,
});
const part = values.part === 'vae' ? 'vaeDecoder' : values.part === 'unet' ? 'unet' : 'text';
const c0 = performance.now();
const cpu0 = process.cpuUsage();
await m.open([part]);
const sessionCreateS = (performance.now() - c0) / 1000;
const createCpu = process.cpuUsage(cpu0);
const rssAfterCreateMb = Math.round(process.memoryUsage().rss / 2 ** 20);
const randn = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const times: number[] = [];
const cpuTimes: number[] = [];
let createS = 0;
for (let i = 0; i < Number(values.runs) + 1; i++) {
  const t0 = performance.now();
  const u0 = process.cpuUsage();
  if (values.part === 'unet') {
    await m.unet({
      x: { data: randn(batch * 4 * lat * lat), dims: [batch, 4, lat, lat] },
      t: { data: new Float32Array(batch).fill(500), dims: [batch] },
      context: { data: randn(batch * 77 * 768), dims: [batch, 77, 768] },
    });
  } else if (values.part === 'vae') {
    await m.vaeDecode({ data: randn(batch * 4 * lat * lat), dims: [batch, 4, lat, lat] });
  } else {
    const ids = new Int32Array(batch * 77).fill(49407);
    await m.encodeIds(ids, batch, 1);
  }
  const s = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(u0);
  if (i === 0) createS = s;
  else {
    times.push(s);
    cpuTimes.push((u.user + u.system) / 1e6);
  }
}
times.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    ...values,
    session_create_s: +sessionCreateS.toFixed(2),
    session_create_cpu_s: +((createCpu.user + createCpu.system) / 1e6).toFixed(2),
    rss_after_create_mb: rssAfterCreateMb,
    first_call_s: +createS.toFixed(2),
    runs_s: times.map((t) => +t.toFixed(2)),
    median_s: +times[Math.floor(times.length / 2)]!.toFixed(2),
    cpu_s_per_run: cpuTimes.map((t) => +t.toFixed(2)),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    cpu: cpus()[0]?.model,
  }),
);
await m.release();
