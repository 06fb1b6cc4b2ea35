/**
 * The `load` probe of `npm run bench`: the real `sdstudio serve` (bin/sdstudio.js, its own process)
 * on 127.0.0.1 with a tiny SD 1.x checkpoint, then many small txt2img requests from concurrent
 * clients over loopback. It checks that every request is answered with its own image and nothing is
 * left in the queue, that the server's memory does not grow (RSS after all requests ≤ RSS after the
 * first 20 + 5 %), and measures requests/s and the server's overhead per request beyond generation.
 *
 * Generation time is the server's own account of each job (`Server-Timing: queue;dur=…, gen;dur=…`
 * from the job record). The worker runs one job at a time, so with the queue kept full the run
 * takes Σ gen plus whatever the server spends between jobs; that difference per request is the
 * overhead figure. The per-request latency beyond queue + gen (HTTP, validation, the response) is
 * reported beside it.
 *
 * Without a checkpoint a random-weight one at tiny dimensions (TINY_SD_ARCH: the golden tiny-sd
 * layout) is written into the probe's temporary data dir, so nothing outside is read. The server
 * finds the CLIP vocabulary as it always does ($SDSTUDIO_CLIP_VOCAB, given here when the bench
 * found one, else its cache).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TINY_SD_ARCH } from './ldm-layout.js';
import { median } from './measure.js';
import { writeRandomCheckpoint } from './random-sd15.js';

export interface LoadProbeOptions {
  /** A checkpoint to serve; default: a random tiny SD 1.x one written for the run. */
  checkpoint?: string;
  clipVocab?: string;
  requests: number;
  clients: number;
  steps: number;
  /** Image side in pixels (default 64). */
  size?: number;
  /** Requests before the measured ones (model load, first-run costs); default 2. */
  warmup?: number;
}

export interface LoadProbeResult {
  probe: string;
  requests: number;
  clients: number;
  steps: number;
  size: number;
  /** Answered 200 with one image carrying the request's own seed. */
  answered: number;
  /** Answered otherwise (status, shape or seed wrong), with the first few reasons. */
  failed: number;
  errors: string[];
  /** Jobs still queued or running once every request was answered (must be 0). */
  left_in_queue: number;
  wall_s: number;
  requests_per_s: number;
  /** Σ generation (the jobs' own run time) / requests. */
  generation_ms_mean: number;
  /** (wall − Σ generation) / requests: what the server costs per request beyond generating. */
  overhead_ms_per_request: number;
  /** Per request: latency − queue wait − generation (HTTP, validation, the response), median and p95. */
  http_overhead_ms_p50: number;
  http_overhead_ms_p95: number;
  latency_ms_p50: number;
  latency_ms_p95: number;
  /** The server's resident memory after the first 20 answers and after the last, MB. */
  rss_mb_after_first: number;
  rss_first_count: number;
  rss_mb_end: number;
  rss_growth_pct: number;
  /** The server's peak RSS (VmHWM), MB. */
  peak_rss_mb: number;
  server_start_s: number;
  checkpoint: { path: string; random: boolean };
}

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const log = (msg: string) => process.stderr.write(`  ${msg}\n`);

/** VmRSS and VmHWM of a process, MB (Linux /proc). */
function processRssMb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function percentile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

/** Starts `sdstudio serve --port 0` and resolves with its URL once it prints it. */
function startServer(
  dataDir: string,
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin', 'sdstudio.js'),
      'serve',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--cache-dir',
      join(dataDir, 'cache'),
    ],
    { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  return new Promise((resolveStart, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sdstudio serve did not start within 180 s: ${err.slice(-1000)}`));
    }, 180_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Running on local URL:\s+(http:\/\/\S+?)\/?\s*$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveStart({ child, url: m[1]!, stderr: () => err });
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sdstudio serve exited (${code ?? signal}) before it was ready: ${err.slice(-1000)}`));
    });
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

interface Answer {
  ok: boolean;
  error?: string;
  latency_ms: number;
  queue_ms: number;
  gen_ms: number;
}

async function txt2img(url: string, seed: number, steps: number, size: number): Promise<Answer> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/sdapi/v1/txt2img`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: `a lighthouse at dusk, request ${seed}`,
        negative_prompt: 'blurry',
        seed,
        steps,
        width: size,
        height: size,
        sampler_name: 'Euler',
        cfg_scale: 5,
      }),
    });
    const text = await res.text();
    const latency_ms = performance.now() - t0;
    const timing = /queue;dur=(\d+), gen;dur=(\d+)/.exec(res.headers.get('server-timing') ?? '');
    const queue_ms = timing ? Number(timing[1]) : NaN;
    const gen_ms = timing ? Number(timing[2]) : NaN;
    const fail = (error: string): Answer => ({ ok: false, error, latency_ms, queue_ms, gen_ms });
    if (res.status !== 200) return fail(`seed ${seed}: HTTP ${res.status} ${text.slice(0, 200)}`);
    const body = JSON.parse(text) as { images?: string[]; info?: string };
    if (body.images?.length !== 1) return fail(`seed ${seed}: ${body.images?.length ?? 0} images`);
    const info = JSON.parse(body.info ?? '{}') as { seed?: number };
    if (info.seed !== seed) return fail(`seed ${seed}: answered with seed ${info.seed}`);
    if (!timing) return fail(`seed ${seed}: no Server-Timing header`);
    return { ok: true, latency_ms, queue_ms, gen_ms };
  } catch (e) {
    return {
      ok: false,
      error: `seed ${seed}: ${(e as Error).message}`,
      latency_ms: performance.now() - t0,
      queue_ms: NaN,
      gen_ms: NaN,
    };
  }
}

export async function probeLoad(opts: LoadProbeOptions): Promise<LoadProbeResult> {
  const size = opts.size ?? 64;
  const warmup = opts.warmup ?? 2;
  const dataDir = mkdtempSync(join(tmpdir(), 'sdstudio-load-'));
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const ckptDir = join(dataDir, 'models', 'Stable-diffusion');
    mkdirSync(ckptDir, { recursive: true });
    let checkpoint: string;
    if (opts.checkpoint) {
      checkpoint = resolve(opts.checkpoint);
      symlinkSync(checkpoint, join(ckptDir, basename(checkpoint)));
    } else {
      checkpoint = join(ckptDir, 'random-tiny-sd1.safetensors');
      const t = performance.now();
      await writeRandomCheckpoint(checkpoint, TINY_SD_ARCH, { seed: 0 });
      log(`load: wrote a random tiny SD 1.x checkpoint in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    // As a user starts it: the source (not a stale dist/), a cache of its own, no huge-page tunable
    // (bin/sdstudio.js sets that for txt2img/img2img only).
    const env: NodeJS.ProcessEnv = { ...process.env, SDSTUDIO_SOURCE: '1' };
    const tunables = (env.GLIBC_TUNABLES ?? '')
      .split(':')
      .filter((t) => t && !t.startsWith('glibc.malloc.hugetlb'));
    if (tunables.length) env.GLIBC_TUNABLES = tunables.join(':');
    else delete env.GLIBC_TUNABLES;
    if (opts.clipVocab) env.SDSTUDIO_CLIP_VOCAB = opts.clipVocab;
    const t0 = performance.now();
    server = await startServer(dataDir, env);
    const server_start_s = (performance.now() - t0) / 1000;
    const pid = server.child.pid!;
    log(`load: ${server.url} ready in ${server_start_s.toFixed(1)} s (pid ${pid})`);

    for (let i = 0; i < warmup; i++) {
      const a = await txt2img(server.url, 1_000_000 + i, opts.steps, size);
      if (!a.ok) throw new Error(`warm-up request failed: ${a.error}\n${server.stderr().slice(-1500)}`);
      log(`load: warm-up ${i + 1}: ${a.latency_ms.toFixed(0)} ms (generation ${a.gen_ms} ms)`);
    }

    const answers: Answer[] = [];
    const firstCount = Math.min(20, opts.requests);
    let rssFirst = NaN;
    let next = 0;
    const t1 = performance.now();
    const client = async () => {
      for (let i = next++; i < opts.requests; i = next++) {
        answers.push(await txt2img(server!.url, i + 1, opts.steps, size));
        if (answers.length === firstCount) rssFirst = processRssMb(pid).rss;
        if (answers.length % 50 === 0) log(`load: ${answers.length}/${opts.requests} answered`);
      }
    };
    await Promise.all(Array.from({ length: opts.clients }, client));
    const wall_ms = performance.now() - t1;
    const mem = processRssMb(pid);

    // Nothing may be left behind: no queued or running job, the A1111 queue idle.
    let left = 0;
    for (const state of ['queued', 'running']) {
      const r = (await (await fetch(`${server.url}/api/v1/jobs?state=${state}&limit=1`)).json()) as {
        total: number;
      };
      left += r.total;
    }
    const progress = (await (await fetch(`${server.url}/sdapi/v1/progress`)).json()) as {
      state: { job_count: number };
    };
    left += progress.state.job_count;

    const ok = answers.filter((a) => a.ok);
    const genSum = ok.reduce((s, a) => s + a.gen_ms, 0);
    const http = ok.map((a) => a.latency_ms - a.queue_ms - a.gen_ms);
    const latency = ok.map((a) => a.latency_ms);
    const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
    const result: LoadProbeResult = {
      probe: `load: ${opts.requests} txt2img ${size}x${size} ${opts.steps} step(s), ${opts.clients} clients`,
      requests: opts.requests,
      clients: opts.clients,
      steps: opts.steps,
      size,
      answered: ok.length,
      failed: answers.length - ok.length,
      errors: answers
        .filter((a) => !a.ok)
        .slice(0, 5)
        .map((a) => a.error!),
      left_in_queue: left,
      wall_s: round(wall_ms / 1000, 3),
      requests_per_s: round((ok.length * 1000) / wall_ms, 2),
      generation_ms_mean: round(ok.length ? genSum / ok.length : NaN),
      overhead_ms_per_request: round(ok.length ? (wall_ms - genSum) / ok.length : NaN),
      http_overhead_ms_p50: round(median(http)),
      http_overhead_ms_p95: round(percentile(http, 0.95)),
      latency_ms_p50: round(median(latency)),
      latency_ms_p95: round(percentile(latency, 0.95)),
      rss_mb_after_first: round(rssFirst),
      rss_first_count: firstCount,
      rss_mb_end: round(mem.rss),
      rss_growth_pct: round(((mem.rss - rssFirst) / rssFirst) * 100, 2),
      peak_rss_mb: round(mem.hwm),
      server_start_s: round(server_start_s, 2),
      checkpoint: {
        path: opts.checkpoint ? checkpoint : 'random tiny SD 1.x (TINY_SD_ARCH)',
        random: !opts.checkpoint,
      },
    };
    log(
      `load: ${result.answered}/${result.requests} answered in ${result.wall_s} s (${result.requests_per_s} req/s), ` +
        `overhead ${result.overhead_ms_per_request} ms/request, RSS ${result.rss_mb_after_first} → ${result.rss_mb_end} MB`,
    );
    return result;
  } finally {
    if (server) await stopServer(server.child);
    rmSync(dataDir, { recursive: true, force: true });
  }
}
