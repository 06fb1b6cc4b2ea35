/**
 * A full-size network (random SD 1.5, bench/random-sd15.ts) under session options and graph
 * variants the product does not expose (yet): attention form, optimisation level, memory pattern,
 * CPU arena, thread spinning, threads. The graph is the engine's (buildUNetGraph /
 * buildVaeDecoderGraph + prepareModel); only the session options differ. One process per variant:
 * session creation, the first runs of the fresh session, then the timed runs.
 * SDSTUDIO_ORT_PROFILE=1 prints onnxruntime's per-op time of the timed runs.
 *
 *   npx tsx bench/experiments/network.ts --net unet --variants mha/extended,plain/extended,mha/all
 *   npx tsx bench/experiments/network.ts --net vae --variants mha/extended
 *   variant = attention/optLevel[/nopattern][/noarena][/nospin][/threadsN][/int8][/tomeNN][/wgN][/cfg:key=value]
 *   (wgN: Winograd convolutions in the UNet's top N levels; default the builder's)
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { openModel } from '../../src/formats/open.js';
import { sd1ConfigFromTensors } from '../../src/models/config.js';
import { tokenMergeInputs } from '../../src/models/token-merging.js';
import { buildUNetGraph } from '../../src/models/unet.js';
import { buildVaeDecoderGraph } from '../../src/models/vae.js';
import type { AttentionImpl } from '../../src/onnx/ops.js';
import type { OptLevel } from '../../src/runtime/session.js';
import { Int8WeightSource } from '../../src/runtime/quantize.js';
import { prepareModel } from '../../src/runtime/weights.js';
import { median, peakRssMb, runChild, timed } from '../measure.js';
import { ensureRandomSd15 } from '../random-sd15.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string' },
    variants: { type: 'string', default: 'mha/extended' },
    net: { type: 'string', default: 'unet' },
    shape: { type: 'string', default: '2,64,64' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
  },
});

interface Result {
  variant: string;
  net: string;
  shape: string;
  build_s: number;
  create_s: number;
  create_cpu_s: number;
  rss_after_create_mb: number;
  warmup_s: number[];
  runs_s: number[];
  runs_cpu_s: number[];
  median_s: number;
  peak_rss_mb: number;
}

async function runVariant(variant: string): Promise<Result> {
  const [attention, opt, ...flags] = variant.split('/') as [AttentionImpl, OptLevel, ...string[]];
  const [B, H, W] = values.shape!.split(',').map(Number) as [number, number, number];
  const src = await openModel(await ensureRandomSd15());
  // tomeNN: token merging at ratio NN / 100.
  const tome = flags.find((f) => f.startsWith('tome'));
  const tokenMerging = tome !== undefined;
  const wg = flags.find((f) => /^wg\d+$/.test(f));
  const winogradLevels = wg === undefined ? undefined : Number(wg.slice(2));
  const cfg = sd1ConfigFromTensors(src);
  const build = await timed(async () => {
    const g =
      values.net === 'vae'
        ? buildVaeDecoderGraph(src, cfg.vae, { attention })
        : flags.includes('int8')
          ? buildUNetGraph(new Int8WeightSource(src), cfg.unet, {
              attention,
              precision: 'int8',
              tokenMerging,
            })
          : buildUNetGraph(src, cfg.unet, { attention, tokenMerging, winogradLevels });
    return prepareModel(g, `experiment-${values.net}${flags.includes('int8') ? '-int8' : ''}`);
  });
  const profilePrefix = join(tmpdir(), `sdstudio-ort-profile-${process.pid}`);
  const profiling = process.env.SDSTUDIO_ORT_PROFILE === '1';
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: opt,
    logSeverityLevel: 3,
    enableMemPattern: !flags.includes('nopattern'),
    enableCpuMemArena: !flags.includes('noarena'),
    extra: {
      session: {
        model_external_initializers_file_folder_path: build.value.externalFolder,
        ...(flags.includes('nospin') ? { 'intra_op.allow_spinning': '0' } : {}),
        // cfg:key=value — any onnxruntime session config entry (session.key), e.g. cfg:dynamic_block_base=4
        ...Object.fromEntries(flags.filter((f) => f.startsWith('cfg:')).map((f) => f.slice(4).split('=', 2))),
      },
    },
  };
  const threads = flags.find((f) => f.startsWith('threads'));
  if (threads) options.intraOpNumThreads = Number(threads.slice('threads'.length));
  const created = await timed(() => ort.InferenceSession.create(build.value.bytes, options));
  const session = created.value;
  const rss_after_create_mb = process.memoryUsage().rss / 2 ** 20;
  process.stderr.write(
    `[${variant}] build ${build.wall_s.toFixed(2)} s, create ${created.wall_s.toFixed(2)} s ` +
      `(cpu ${created.cpu_s.toFixed(2)} s), RSS ${rss_after_create_mb.toFixed(0)} MB\n`,
  );
  const rand = (n: number, seed: number) => {
    const a = new Float32Array(n);
    let x = seed;
    for (let i = 0; i < n; i++) a[i] = ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1) * 2;
    return a;
  };
  const feeds: Record<string, ort.Tensor> =
    values.net === 'vae'
      ? { z: new ort.Tensor('float32', rand(B * 4 * H * W, 1), [B, 4, H, W]) }
      : {
          x: new ort.Tensor('float32', rand(B * 4 * H * W, 1), [B, 4, H, W]),
          timesteps: new ort.Tensor('float32', new Float32Array(B).fill(500), [B]),
          context: new ort.Tensor('float32', rand(B * 77 * 768, 2), [B, 77, 768]),
        };
  if (tome) {
    const m = tokenMergeInputs(H, W, Number(tome.slice(4)) / 100);
    feeds.tome_src = new ort.Tensor('int64', m.src, [m.src.length]);
    feeds.tome_dst = new ort.Tensor('int64', m.dst, [m.dst.length]);
    feeds.tome_r = new ort.Tensor('int64', m.r, [1]);
  }
  const warmup_s: number[] = [];
  const runs_s: number[] = [];
  const runs_cpu_s: number[] = [];
  const total = Number(values.warmup) + Number(values.runs);
  let profSession: ort.InferenceSession | undefined;
  for (let i = 0; i < total; i++) {
    const t = await timed(() => session.run(feeds));
    if (i < Number(values.warmup)) warmup_s.push(t.wall_s);
    else {
      runs_s.push(t.wall_s);
      runs_cpu_s.push(t.cpu_s);
    }
    process.stderr.write(
      `[${variant}] run ${i}: ${t.wall_s.toFixed(2)} s (cpu ${t.cpu_s.toFixed(2)} s), peak RSS ${peakRssMb().toFixed(0)} MB\n`,
    );
  }
  await session.release();
  if (profiling) {
    // A second session with profiling on, warmed up, then one profiled run.
    profSession = await ort.InferenceSession.create(build.value.bytes, {
      ...options,
      enableProfiling: true,
      profileFilePrefix: profilePrefix,
    });
    for (let i = 0; i < 3; i++) await profSession.run(feeds);
    profSession.endProfiling();
    await profSession.release();
    printProfile(profilePrefix);
  }
  await src.close();
  return {
    variant,
    net: values.net!,
    shape: values.shape!,
    build_s: build.wall_s,
    create_s: created.wall_s,
    create_cpu_s: created.cpu_s,
    rss_after_create_mb,
    warmup_s,
    runs_s,
    runs_cpu_s,
    median_s: median(runs_s),
    peak_rss_mb: peakRssMb(),
  };
}

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; [k: string]: unknown };
}

/** onnxruntime's per-node kernel times of the last profiled run, summed by op type. */
function printProfile(prefix: string): void {
  const dir = tmpdir();
  const base = prefix.slice(dir.length + 1);
  for (const f of readdirSync(dir).filter((n) => n.startsWith(base) && n.endsWith('.json'))) {
    const events = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ProfileEvent[];
    rmSync(join(dir, f));
    // Only the last run: events after the last-but-one "model_run" (SDSTUDIO_ORT_PROFILE_FIRST=1:
    // the fresh session's first run instead, to see where its extra time goes).
    const runEnds = events.map((e, i) => (e.name === 'model_run' ? i : -1)).filter((i) => i >= 0);
    const first = process.env.SDSTUDIO_ORT_PROFILE_FIRST === '1';
    const from = first ? 0 : runEnds.length >= 2 ? runEnds[runEnds.length - 2]! : 0;
    const to = first && runEnds.length ? runEnds[0]! : events.length;
    const byOp = new Map<string, number>();
    for (const e of events.slice(from, to)) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? '?';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    process.stderr.write(`  profile of one run: ${(total / 1e6).toFixed(2)} s in kernels\n`);
    // SDSTUDIO_ORT_PROFILE_NODES=path: every node's kernel time of that run as JSON lines.
    const nodesOut = process.env.SDSTUDIO_ORT_PROFILE_NODES;
    if (nodesOut) {
      const lines = events
        .slice(from, to)
        .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'))
        .map((e) => JSON.stringify({ node: e.name.slice(0, -'_kernel_time'.length), us: e.dur, ...e.args }));
      writeFileSync(nodesOut, lines.join('\n') + '\n');
    }
    for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
      process.stderr.write(
        `  ${op.padEnd(28)} ${(us / 1e6).toFixed(3)} s  ${((100 * us) / total).toFixed(1)}%\n`,
      );
    }
  }
}

if (values.variant) {
  console.log(JSON.stringify(await runVariant(values.variant)));
} else {
  const script = new URL(import.meta.url).pathname;
  const results: Result[] = [];
  for (const v of values.variants!.split(',')) {
    const args = ['--variant', v, '--net', values.net!, '--shape', values.shape!];
    results.push(runChild<Result>(script, [...args, '--runs', values.runs!, '--warmup', values.warmup!]));
  }
  console.log(JSON.stringify(results));
}
