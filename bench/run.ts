/**
 * `npm run bench`: the engine on a full-size SD 1.5 architecture with random weights
 * (bench/random-sd15.ts; written once, then cached), each figure the median of `--runs` runs after
 * `--warmup` runs of a fresh session, every probe in its own process.
 *
 *   npm run bench                         # table on stdout, progress on stderr
 *   npm run bench -- --json               # exactly one JSON object on stdout
 *   npm run bench -- --only unet512 --runs 3
 *   npm run bench -- --attention plain --opt-level all --threads 2 --checkpoint my-sd15.safetensors
 *   npm run bench -- --in-process         # no child processes: quicker, but peak RSS accumulates
 *
 * Probes (--only, comma-separated): gemm (this machine's fp32 GEMM rate on onnxruntime, measured
 * first and again last: the state the other figures were taken in), create (text + UNet + VAE
 * decoder sessions from the file),
 * unet512 (512² batch 2), unet512b1, unet256 (256² batch 2), vae (decode 512²), text (one
 * 77-token prompt), txt2img (512², --steps UNet steps through the engine, all three networks
 * loaded), pipeline (the product's loadModel + generate at 512², --steps Euler steps; needs the
 * CLIP vocabulary: --clip-vocab, $SDSTUDIO_CLIP_VOCAB or ../shared/data/clip), unet512int8 (the
 * opt-in int8 UNet at 512² batch 2; its first run ever quantizes the checkpoint into the weights
 * cache, reported as its session creation), int8quality (int8 vs fp32: PSNR of one UNet output and
 * of the image after --quality-steps Euler steps), unet512cfg / unet512int8cfg (one CFG step: both
 * rows the same latent, as the sampler calls the UNet), unet512tome / unet512int8tome /
 * unet512int8tomecfg (fp32 / int8 with token merging at --token-merging, default 0.5),
 * tomequality (int8 + token merging vs fp32, as int8quality), load (bench/load.ts: the real
 * `sdstudio serve` on 127.0.0.1 with a tiny random checkpoint — or --checkpoint — answering
 * --load-requests 64×64 txt2img requests of --steps steps from --load-clients concurrent clients:
 * all answered, RSS growth, requests/s, overhead per request); default all but the SD 2.x / SDXL
 * probes of bench/xl.ts, which run when named. The load, gemm and XL probes need no SD 1.5 file:
 * the random 4.3 GB one is written only for the engine probes.
 * loraswitch / loratxt2img (bench/lora-probes.ts, issue #15): steady CFG steps without and with a
 * random full-coverage rank-32 LoRA and the time before the first step of each LoRA switch; a 512²
 * txt2img with two such LoRAs (its peak RSS against txt2img's).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import type { AttentionImpl } from '../src/onnx/ops.js';
import type { OptLevel } from '../src/runtime/session.js';
import { machineInfo, runChild } from './measure.js';
import {
  probeCreate,
  probeGemm,
  probeInt8Quality,
  probePipeline,
  probeText,
  probeTxt2img,
  probeUNet,
  probeVaeDecode,
  type CreateProbeResult,
  type GemmProbeResult,
  type Int8QualityResult,
  type PipelineProbeResult,
  type ProbeOptions,
  type SessionProbeResult,
  type TextProbeResult,
  type Txt2imgProbeResult,
} from './probes.js';
import { probeLoad, type LoadProbeResult } from './load.js';
import {
  probeLoraSwitch,
  probeLoraTxt2img,
  type LoraSwitchResult,
  type LoraTxt2imgResult,
} from './lora-probes.js';
import { ensureRandomSd15, RANDOM_SD15_VERSION } from './random-sd15.js';
import { isXlProbe, runXlProbe, XL_PROBES, xlCheckpoints, xlSummary, type XlProbeResult } from './xl.js';

const PROBES = [
  'gemm',
  'create',
  'unet512',
  'unet512b1',
  'unet256',
  'vae',
  'text',
  'txt2img',
  'pipeline',
  'unet512int8',
  'int8quality',
  'unet512cfg',
  'unet512int8cfg',
  'unet512tome',
  'unet512int8tome',
  'unet512int8tomecfg',
  'tomequality',
  'load',
  ...XL_PROBES, // SD 2.x / SDXL (bench/xl.ts)
  'loraswitch',
  'loratxt2img',
] as const;
type ProbeName = (typeof PROBES)[number];

/**
 * FLOPs of one SD 1.5 UNet step at 512² batch 2 counted as direct convolutions and plain attention
 * (docs/performance.md: 1607 GFLOP); Winograd does fewer multiplies, so the equivalent rate can
 * exceed the GEMM rate.
 */
const UNET_GFLOP_512_B2 = 1607;

/** The targets on the reference machine (2 cores, AVX-512). */
export const TARGETS = {
  unet_s_per_step_512_b2: 4.4,
  vae_decode_s_512: 7.5,
  session_create_s: 10,
  peak_rss_mb: 6 * 1024,
  unet_int8_s_per_step_512_b2: 2.5,
  int8_psnr_db: 30,
  load_overhead_ms_per_request: 20,
  load_rss_growth_pct: 5,
} as const;

const USAGE = `usage: npm run bench -- [--json] [--only ${PROBES.join(',')}] [--runs N] [--warmup N] [--quality-steps N]
       [--token-merging RATIO]
       [--attention mha|plain] [--opt-level disabled|basic|extended|all] [--threads N] [--mem-arena on|off]
       [--steps N] [--checkpoint PATH] [--clip-vocab PATH] [--in-process] [--no-hugepages]
       [--load-requests N] [--load-clients N]`;

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

/** The CLIP merges file: --clip-vocab, $SDSTUDIO_CLIP_VOCAB, or the shared data folder next to the repo. */
function findClipVocab(flag: string | undefined): string | undefined {
  const explicit = flag ?? process.env.SDSTUDIO_CLIP_VOCAB;
  if (explicit) {
    if (!existsSync(explicit)) fail(`CLIP vocabulary ${explicit} does not exist`);
    return resolve(explicit);
  }
  const shared = fileURLToPath(
    new URL('../../shared/data/clip/bpe_simple_vocab_16e6.txt.gz', import.meta.url),
  );
  return existsSync(shared) ? shared : undefined;
}

/** SDXL's 3 and SD 2.x's 4 levels (at ¾ of it) halve evenly only at multiples of 32. */
function xlLatentOf(n: number): number {
  if (n % 32 !== 0) fail(`--xl-latent must be a multiple of 32, got ${n}`);
  return n;
}

function parse() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        json: { type: 'boolean', default: false },
        only: { type: 'string' },
        runs: { type: 'string', default: '3' },
        warmup: { type: 'string', default: '2' },
        steps: { type: 'string', default: '1' },
        'quality-steps': { type: 'string', default: '8' },
        'token-merging': { type: 'string', default: '0.5' },
        'load-requests': { type: 'string', default: '200' },
        'load-clients': { type: 'string', default: '8' },
        attention: { type: 'string' },
        'opt-level': { type: 'string' },
        threads: { type: 'string' },
        'mem-arena': { type: 'string' },
        checkpoint: { type: 'string' },
        'sd2-checkpoint': { type: 'string' },
        'sdxl-checkpoint': { type: 'string' },
        'xl-latent': { type: 'string', default: '128' },
        'clip-vocab': { type: 'string' },
        probe: { type: 'string' },
        'in-process': { type: 'boolean', default: false },
        'no-hugepages': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (name: string, s: string, min: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer ≥ ${min}, got "${s}"`);
    return n;
  };
  const clipVocab = findClipVocab(v['clip-vocab']);
  // The SD 2.x / SDXL probes (12 GB of checkpoints, tens of minutes) run only when named.
  const only = (v.only ?? PROBES.filter((p) => (p !== 'pipeline' || clipVocab) && !isXlProbe(p)).join(','))
    .split(',')
    .map((s) => s.trim());
  for (const p of only) if (!(PROBES as readonly string[]).includes(p)) fail(`unknown probe "${p}"`);
  if ((only.includes('pipeline') || only.some((p) => p.startsWith('xlpipeline'))) && !clipVocab) {
    fail('the pipeline probe needs the CLIP vocabulary: pass --clip-vocab PATH or set SDSTUDIO_CLIP_VOCAB');
  }
  if (v.attention && v.attention !== 'mha' && v.attention !== 'plain')
    fail('--attention must be mha or plain');
  if (v['mem-arena'] && v['mem-arena'] !== 'on' && v['mem-arena'] !== 'off')
    fail('--mem-arena must be on or off');
  const levels = ['disabled', 'basic', 'extended', 'all'];
  if (v['opt-level'] && !levels.includes(v['opt-level']))
    fail(`--opt-level must be one of ${levels.join(', ')}`);
  const tokenMerging = Number(v['token-merging']);
  if (!(tokenMerging > 0 && tokenMerging <= 0.75)) fail('--token-merging must be a ratio in (0, 0.75]');
  return {
    json: v.json!,
    tokenMerging,
    only: only as ProbeName[],
    probe: v.probe,
    clipVocab,
    inProcess: v['in-process']!,
    hugePages: !v['no-hugepages'],
    steps: int('steps', v.steps!, 1),
    loadRequests: int('load-requests', v['load-requests']!, 1),
    loadClients: int('load-clients', v['load-clients']!, 1),
    qualitySteps: int('quality-steps', v['quality-steps']!, 1),
    checkpoint: v.checkpoint ? resolve(v.checkpoint) : undefined,
    sd2Checkpoint: v['sd2-checkpoint'] ? resolve(v['sd2-checkpoint']) : undefined,
    sdxlCheckpoint: v['sdxl-checkpoint'] ? resolve(v['sdxl-checkpoint']) : undefined,
    xlLatent: xlLatentOf(int('xl-latent', v['xl-latent']!, 32)),
    probeOptions: {
      runs: int('runs', v.runs!, 1),
      warmup: int('warmup', v.warmup!, 0),
      attention: v.attention as AttentionImpl | undefined,
      optLevel: v['opt-level'] as OptLevel | undefined,
      threads: v.threads === undefined ? undefined : int('threads', v.threads, 1),
      memArena: v['mem-arena'] === undefined ? undefined : v['mem-arena'] === 'on',
    },
  };
}

type ProbeResult =
  | LoraSwitchResult
  | LoraTxt2imgResult
  | GemmProbeResult
  | CreateProbeResult
  | SessionProbeResult
  | TextProbeResult
  | Txt2imgProbeResult
  | PipelineProbeResult
  | Int8QualityResult
  | LoadProbeResult
  | XlProbeResult;

interface ChildSettings {
  steps: number;
  clipVocab: string | undefined;
  qualitySteps: number;
  tokenMerging: number;
  loadRequests: number;
  loadClients: number;
  sd2Checkpoint?: string;
  sdxlCheckpoint?: string;
  xlLatent: number;
}

/** Child side: run one probe and print its JSON result as the last stdout line. */
async function runProbe(name: ProbeName, opts: ProbeOptions, settings: ChildSettings): Promise<ProbeResult> {
  const { steps, clipVocab, qualitySteps, tokenMerging } = settings;
  const tome = { ...opts, tokenMergeRatio: tokenMerging };
  if (isXlProbe(name)) {
    const xl = { sd2Checkpoint: settings.sd2Checkpoint ?? '', sdxlCheckpoint: settings.sdxlCheckpoint ?? '' };
    return runXlProbe(name, opts, { ...xl, steps, clipVocab, xlLatent: settings.xlLatent });
  }
  switch (name) {
    case 'gemm':
      return probeGemm(opts);
    case 'create':
      return probeCreate(opts);
    case 'unet512':
      return probeUNet(opts, 2, 64, 64);
    case 'unet512b1':
      return probeUNet(opts, 1, 64, 64);
    case 'unet256':
      return probeUNet(opts, 2, 32, 32);
    case 'vae':
      return probeVaeDecode(opts, 64, 64);
    case 'text':
      return probeText(opts);
    case 'txt2img':
      return probeTxt2img(opts, steps);
    case 'pipeline':
      return probePipeline(opts, steps, clipVocab!);
    case 'unet512int8':
      return probeUNet({ ...opts, unetPrecision: 'int8' }, 2, 64, 64);
    case 'unet512cfg':
      return probeUNet(opts, 2, 64, 64, true);
    case 'unet512int8cfg':
      return probeUNet({ ...opts, unetPrecision: 'int8' }, 2, 64, 64, true);
    case 'int8quality':
      return probeInt8Quality(opts, qualitySteps);
    case 'unet512tome':
      return probeUNet(tome, 2, 64, 64);
    case 'unet512int8tome':
      return probeUNet({ ...tome, unetPrecision: 'int8' }, 2, 64, 64);
    case 'unet512int8tomecfg':
      return probeUNet({ ...tome, unetPrecision: 'int8' }, 2, 64, 64, true);
    case 'tomequality':
      return probeInt8Quality(opts, qualitySteps, { precision: 'int8', tokenMergeRatio: tokenMerging });
    case 'loraswitch':
      return probeLoraSwitch(opts);
    case 'loratxt2img':
      return probeLoraTxt2img(opts, steps);
    case 'load':
      // The checkpoint only when one was given: by default the probe writes a tiny one itself.
      return probeLoad({
        checkpoint: opts.checkpoint || undefined,
        clipVocab,
        requests: settings.loadRequests,
        clients: settings.loadClients,
        steps,
      });
  }
}

const round = (x: number | undefined, digits = 3) =>
  x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits;

async function main(): Promise<void> {
  const args = parse();
  const self = fileURLToPath(import.meta.url);
  // Probe processes start as `sdstudio txt2img` does (bin/sdstudio.js): glibc's malloc asking for
  // transparent huge pages, unless --no-hugepages.
  const tunables = process.env.GLIBC_TUNABLES ?? '';
  if (args.hugePages && !args.probe && !tunables.includes('glibc.malloc.hugetlb')) {
    process.env.GLIBC_TUNABLES = [tunables, 'glibc.malloc.hugetlb=1'].filter(Boolean).join(':');
  }

  if (args.probe) {
    const opts: ProbeOptions = { checkpoint: args.checkpoint ?? '', ...args.probeOptions };
    const result = await runProbe(args.probe as ProbeName, opts, args);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }

  const machine = machineInfo();
  // The engine probes run the full-size random SD 1.5 (written once); the load probe needs none.
  const engineProbes = args.only.some((p) => p !== 'load' && p !== 'gemm' && !isXlProbe(p));
  const xl = await xlCheckpoints(args.only, { sd2: args.sd2Checkpoint, sdxl: args.sdxlCheckpoint });
  const checkpoint = args.checkpoint ?? (engineProbes ? await ensureRandomSd15() : '');
  process.stderr.write(
    `bench: ${checkpoint || 'no SD 1.5 checkpoint needed'}\nbench: ${machine.cores} cores (${machine.cpu_model}), load average ${machine.load_avg_1m}\n`,
  );
  const childArgs = (probe: ProbeName) => {
    const a = ['--probe', probe, '--steps', String(args.steps)];
    // The load probe gets a checkpoint only when the user gave one.
    if (probe !== 'load' || args.checkpoint) a.push('--checkpoint', checkpoint);
    a.push('--load-requests', String(args.loadRequests), '--load-clients', String(args.loadClients));
    a.push('--quality-steps', String(args.qualitySteps), '--token-merging', String(args.tokenMerging));
    if (args.clipVocab) a.push('--clip-vocab', args.clipVocab);
    if (xl.sd2) a.push('--sd2-checkpoint', xl.sd2);
    if (xl.sdxl) a.push('--sdxl-checkpoint', xl.sdxl);
    a.push('--xl-latent', String(args.xlLatent));
    const o = args.probeOptions;
    a.push('--runs', String(o.runs), '--warmup', String(o.warmup));
    if (o.attention) a.push('--attention', o.attention);
    if (o.optLevel) a.push('--opt-level', o.optLevel);
    if (o.threads) a.push('--threads', String(o.threads));
    if (o.memArena !== undefined) a.push('--mem-arena', o.memArena ? 'on' : 'off');
    return a;
  };
  const results: Partial<Record<ProbeName, ProbeResult>> = {};
  const run = async (probe: ProbeName): Promise<ProbeResult> => {
    process.stderr.write(`bench: ${probe}\n`);
    return args.inProcess
      ? await runProbe(
          probe,
          { checkpoint: probe === 'load' ? (args.checkpoint ?? '') : checkpoint, ...args.probeOptions },
          { ...args, sd2Checkpoint: xl.sd2, sdxlCheckpoint: xl.sdxl },
        )
      : runChild<ProbeResult>(self, childArgs(probe));
  };
  for (const probe of args.only) results[probe] = await run(probe);
  // The GEMM rate once more after the other probes: the VM's state may have changed meanwhile.
  const gemmEnd = args.only.includes('gemm') && args.only.length > 1 ? await run('gemm') : undefined;

  const create = results.create as CreateProbeResult | undefined;
  const unet512 = results.unet512 as SessionProbeResult | undefined;
  const vae = results.vae as SessionProbeResult | undefined;
  const text = results.text as TextProbeResult | undefined;
  const txt2img = results.txt2img as Txt2imgProbeResult | undefined;
  const pipeline = results.pipeline as PipelineProbeResult | undefined;
  const int8 = results.unet512int8 as SessionProbeResult | undefined;
  const quality = results.int8quality as Int8QualityResult | undefined;
  const tomeQuality = results.tomequality as Int8QualityResult | undefined;
  const load = results.load as LoadProbeResult | undefined;
  const sessionMedian = (p: ProbeName) => round((results[p] as SessionProbeResult | undefined)?.median_s);
  const peaks = Object.values(results).map((r) => r.peak_rss_mb);
  const gemmFirst = (results.gemm as GemmProbeResult | undefined)?.gflops;
  const gemmLast = (gemmEnd as GemmProbeResult | undefined)?.gflops;
  const gemmMean = gemmFirst !== undefined && gemmLast !== undefined ? (gemmFirst + gemmLast) / 2 : gemmFirst;
  const unetGemm = unet512?.gemm_gflops ?? gemmMean;
  const out = {
    unet_s_per_step_512_b2: round(unet512?.median_s),
    // The machine's state: fp32 GEMM GFLOP/s before and after the other probes and right after
    // the UNet's runs, and the UNet step against the floor that rate sets (UNET_GFLOP_512_B2 ÷ rate).
    gemm_fp32_gflops: round(gemmFirst, 0),
    gemm_fp32_gflops_end: round(gemmLast, 0),
    unet_gemm_gflops_512_b2: round(unet512?.gemm_gflops, 0),
    unet_gemm_floor_s_512_b2: round(unetGemm ? UNET_GFLOP_512_B2 / unetGemm : undefined),
    unet_equivalent_gflops_512_b2: round(unet512 ? UNET_GFLOP_512_B2 / unet512.median_s : undefined, 0),
    unet_s_per_step_512_b1: round((results.unet512b1 as SessionProbeResult | undefined)?.median_s),
    unet_s_per_step_256_b2: round((results.unet256 as SessionProbeResult | undefined)?.median_s),
    vae_decode_s_512: round(vae?.median_s),
    text_encode_ms: round(text ? text.median_s * 1000 : undefined, 1),
    session_create_s: round(create?.create_s, 2),
    session_create_first_s: round(create?.first_create_s, 2),
    session_create_first_optimised_unet: create?.optimised_now ?? null,
    // The end-to-end figure (the product's pipeline, else the engine txt2img); otherwise the largest probe's.
    peak_rss_mb: round(
      pipeline?.peak_rss_mb ?? txt2img?.peak_rss_mb ?? (peaks.length ? Math.max(...peaks) : undefined),
      0,
    ),
    txt2img_engine_peak_rss_mb: round(txt2img?.peak_rss_mb, 0),
    txt2img_pipeline_peak_rss_mb: round(pipeline?.peak_rss_mb, 0),
    unet_first_runs_s_512_b2: unet512?.warmup_s.map((x) => round(x)),
    vae_first_runs_s_512: vae?.warmup_s.map((x) => round(x)),
    session_create_rss_mb: round(create?.rss_after_create_mb, 0),
    unet_session_create_s: round(unet512?.create_s, 2),
    txt2img_512_total_s: round(txt2img?.total_s, 2),
    unet_int8_s_per_step_512_b2: round(int8?.median_s),
    // One CFG step (both rows the same latent): the first blocks run once (sharedRows).
    unet_s_per_cfg_step_512: round((results.unet512cfg as SessionProbeResult | undefined)?.median_s),
    unet_int8_s_per_cfg_step_512: round((results.unet512int8cfg as SessionProbeResult | undefined)?.median_s),
    unet_int8_first_runs_s_512_b2: int8?.warmup_s.map((x) => round(x)),
    unet_int8_session_create_s: round(int8?.create_s, 2),
    unet_int8_peak_rss_mb: round(int8?.peak_rss_mb, 0),
    int8_psnr_db_unet_eps: round(quality?.psnr_eps_db, 2),
    int8_psnr_db_image: round(quality?.psnr_image_db, 2),
    int8_quality_steps: quality?.steps ?? null,
    // Token merging (A1111 "Token merging ratio") at options.token_merging: changes the image.
    unet_tome_s_per_step_512_b2: sessionMedian('unet512tome'),
    unet_int8_tome_s_per_step_512_b2: sessionMedian('unet512int8tome'),
    unet_int8_tome_s_per_cfg_step_512: sessionMedian('unet512int8tomecfg'),
    int8_tome_psnr_db_unet_eps: round(tomeQuality?.psnr_eps_db, 2),
    int8_tome_psnr_db_image: round(tomeQuality?.psnr_image_db, 2),
    // The server under load (bench/load.ts): real `sdstudio serve`, small txt2img requests.
    load_requests: load?.requests ?? null,
    load_clients: load?.clients ?? null,
    load_answered: load?.answered ?? null,
    load_lost: load ? load.requests - load.answered + load.left_in_queue : null,
    load_requests_per_s: round(load?.requests_per_s, 2),
    load_generation_ms_mean: round(load?.generation_ms_mean, 1),
    load_overhead_ms_per_request: round(load?.overhead_ms_per_request, 1),
    load_http_overhead_ms_p50: round(load?.http_overhead_ms_p50, 1),
    load_latency_ms_p50: round(load?.latency_ms_p50, 1),
    load_rss_mb_after_first_20: round(load?.rss_mb_after_first, 0),
    load_rss_mb_end: round(load?.rss_mb_end, 0),
    load_rss_growth_pct: round(load?.rss_growth_pct, 2),
    ...xlSummary(results),
    machine: { ...machine, load_avg_1m_end: machineInfo().load_avg_1m },
    onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    options: {
      runs: args.probeOptions.runs,
      warmup: args.probeOptions.warmup,
      attention: args.probeOptions.attention ?? 'engine default',
      opt_level: args.probeOptions.optLevel ?? 'engine default',
      threads: args.probeOptions.threads ?? 'engine default (all CPUs)',
      mem_arena: args.probeOptions.memArena === undefined ? 'engine default' : args.probeOptions.memArena,
      txt2img_steps: args.steps,
      token_merging: args.tokenMerging,
      glibc_tunables: process.env.GLIBC_TUNABLES ?? null,
    },
    checkpoint: {
      path: checkpoint || null,
      random: !args.checkpoint,
      generator_version: RANDOM_SD15_VERSION,
    },
    targets: TARGETS,
    probes: results,
  };

  if (args.json) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const rows: [string, number | null, string, number | undefined][] = [
    ['fp32 GEMM (machine state)', out.gemm_fp32_gflops, 'GFLOP/s', undefined],
    ['… after the other probes', out.gemm_fp32_gflops_end, 'GFLOP/s', undefined],
    ['UNet 512² batch 2', out.unet_s_per_step_512_b2, 's/step', TARGETS.unet_s_per_step_512_b2],
    ['… fp32 GEMM right after', out.unet_gemm_gflops_512_b2, 'GFLOP/s', undefined],
    ['… GEMM floor at that rate', out.unet_gemm_floor_s_512_b2, 's/step', undefined],
    ['UNet 512² batch 1', out.unet_s_per_step_512_b1, 's/step', undefined],
    ['UNet 256² batch 2', out.unet_s_per_step_256_b2, 's/step', undefined],
    ['VAE decode 512²', out.vae_decode_s_512, 's', TARGETS.vae_decode_s_512],
    ['text encode (77 tokens)', out.text_encode_ms, 'ms', undefined],
    ['session create + weights', out.session_create_s, 's', TARGETS.session_create_s],
    [
      out.session_create_first_optimised_unet
        ? '… first load (optimises UNet)'
        : '… first load of this process',
      out.session_create_first_s,
      's',
      undefined,
    ],
    [
      'int8 UNet 512² batch 2',
      out.unet_int8_s_per_step_512_b2,
      's/step',
      TARGETS.unet_int8_s_per_step_512_b2,
    ],
    [
      `int8 + token merging ${args.tokenMerging}`,
      out.unet_int8_tome_s_per_step_512_b2,
      's/step',
      TARGETS.unet_int8_s_per_step_512_b2,
    ],
    pipeline || txt2img
      ? ['peak RSS, 512² txt2img', out.peak_rss_mb, 'MB', TARGETS.peak_rss_mb]
      : ['peak RSS, largest probe', out.peak_rss_mb, 'MB', undefined],
    ['server: requests lost', out.load_lost, `of ${out.load_requests}`, 0],
    ['server: throughput', out.load_requests_per_s, 'req/s', undefined],
    ['… generation per request', out.load_generation_ms_mean, 'ms', undefined],
    ['… overhead per request', out.load_overhead_ms_per_request, 'ms', TARGETS.load_overhead_ms_per_request],
    ['… HTTP overhead (median)', out.load_http_overhead_ms_p50, 'ms', undefined],
    ['… RSS after first 20', out.load_rss_mb_after_first_20, 'MB', undefined],
    ['… RSS growth after', out.load_rss_growth_pct, '%', TARGETS.load_rss_growth_pct],
  ];
  const lines = [
    `${!checkpoint ? 'tiny SD 1.x, random weights (server)' : out.checkpoint.random ? 'SD 1.5, random weights' : checkpoint}, onnxruntime ${out.onnxruntime}`,
  ];
  lines.push(`${machine.cores} cores, ${machine.cpu_model}, load average ${machine.load_avg_1m}`);
  for (const [name, value, unit, target] of rows) {
    if (value === null) continue;
    const verdict = target === undefined ? '' : value <= target ? `  ≤ ${target} ✓` : `  > ${target} ✗`;
    lines.push(`${name.padEnd(28)} ${String(value).padStart(9)} ${unit}${verdict}`);
  }
  for (const [name, value] of [
    ['int8 PSNR, UNet eps', out.int8_psnr_db_unet_eps],
    [`int8 PSNR, image (${out.int8_quality_steps} steps)`, out.int8_psnr_db_image],
    ['int8 + token merging PSNR, eps', out.int8_tome_psnr_db_unet_eps],
    ['int8 + token merging PSNR, image', out.int8_tome_psnr_db_image],
  ] as const) {
    if (value !== null)
      lines.push(
        `${name.padEnd(28)} ${String(value).padStart(9)} dB  ${value >= TARGETS.int8_psnr_db ? '≥' : '<'} ${TARGETS.int8_psnr_db}`,
      );
  }
  for (const [key, value] of Object.entries(xlSummary(results)))
    if (typeof value === 'number') lines.push(`${key.padEnd(28)} ${String(value).padStart(9)}`);
  if (out.unet_first_runs_s_512_b2)
    lines.push(`UNet 512² b2 fresh-session runs: ${out.unet_first_runs_s_512_b2.join(', ')} s`);
  if (out.vae_first_runs_s_512)
    lines.push(`VAE 512² fresh-session runs: ${out.vae_first_runs_s_512.join(', ')} s`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
