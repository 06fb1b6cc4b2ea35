/**
 * Whether an execution provider can really start here, asked before any weights are prepared: a
 * GPU provider listed by onnxruntime may still lack its libraries (CUDA is not downloaded by our
 * install) or a device (webgpu without a Vulkan/Metal/D3D adapter). The probe runs in a child
 * process, so native log lines of a failing driver never reach the user's terminal; its answer is
 * one line naming the providers this install has.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import { MemoryTensorSource } from '../formats/memory.js';
import { GraphBuilder } from '../onnx/builder.js';
import { encodeModel } from '../onnx/proto.js';
import { UserError } from '../util/errors.js';
import { checkProvider, type Provider } from './session.js';

/** The shared libraries a provider that onnxruntime-node does not bundle loads at session start. */
const PROVIDER_LIBRARIES: Partial<Record<string, string[]>> = {
  cuda: ['libonnxruntime_providers_cuda.so', 'onnxruntime_providers_cuda.dll'],
  tensorrt: ['libonnxruntime_providers_tensorrt.so', 'onnxruntime_providers_tensorrt.dll'],
};

function ortPackageDir(): string {
  // .../onnxruntime-node/dist/index.js → .../onnxruntime-node
  return dirname(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')));
}

/** The folders holding onnxruntime-node's native binding for this platform. */
function bindingDirs(): string[] {
  const bin = join(ortPackageDir(), 'bin');
  if (!existsSync(bin)) return [];
  return readdirSync(bin)
    .map((napi) => join(bin, napi, process.platform, process.arch))
    .filter((d) => existsSync(d));
}

/** Providers of this onnxruntime-node install: the bundled ones and those whose libraries are there. */
export function installedProviders(): string[] {
  const dirs = bindingDirs();
  return ort
    .listSupportedBackends()
    .filter(
      (b) =>
        b.bundled ||
        (PROVIDER_LIBRARIES[b.name] ?? []).some((lib) => dirs.some((d) => existsSync(join(d, lib)))),
    )
    .map((b) => b.name);
}

function probeModel(): Uint8Array {
  const g = new GraphBuilder('probe', new MemoryTensorSource(new Map()), { contribOps: false });
  const x = g.input('x', 'float32', [4]);
  g.output(g.op1('Add', [x, x], {}, { name: 'twice' }), 'y', 'float32', [4]);
  return encodeModel(
    g.toModel(() => {
      throw new Error('the probe has no params');
    }),
  );
}

/** Creates and runs a one-node session on `provider` in a child process; resolves with why it failed. */
function probeInChild(provider: string): Promise<string | undefined> {
  const script = `
    const { default: ort } = await import(${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('onnxruntime-node')).href)});
    const bytes = Buffer.from(process.argv[1], 'base64');
    try {
      const s = await ort.InferenceSession.create(bytes, { executionProviders: [process.argv[2]], logSeverityLevel: 4 });
      await s.run({ x: new ort.Tensor('float32', new Float32Array(4), [4]) });
      await s.release();
      process.stdout.write('ok');
    } catch (e) {
      process.stdout.write('fail:' + String(e && e.message ? e.message : e));
    }`;
  const model = Buffer.from(probeModel()).toString('base64');
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script, model, provider],
      { timeout: 120_000, maxBuffer: 1 << 20, env: process.env },
      (err, stdout) => {
        if (stdout === 'ok') resolve(undefined);
        else if (stdout.startsWith('fail:')) resolve(stdout.slice(5));
        else resolve(err ? `the probe process ${err.killed ? 'timed out' : 'failed'}` : 'no answer');
      },
    );
  });
}

const checked = new Map<string, Promise<Provider>>();

/** onnxruntime's reason without its source location and failed condition, on one line. */
export function providerFailureReason(message: string): string {
  let line = (message.split('\n').find((l) => l.trim()) ?? message).trim();
  const tail = /\bwas false\.\s*(.+)$/.exec(line);
  if (tail) line = tail[1]!;
  line = line.replace(/^\S+\.(cc|cpp|h):\d+\s+/, '');
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/**
 * `provider` as a Provider once it has started here (checked once per process); else a UserError,
 * one line, naming the providers this install has. The CPU provider is always there.
 */
export function ensureProvider(provider: string): Promise<Provider> {
  let p = checked.get(provider);
  if (!p) {
    p = (async () => {
      const name = checkProvider(provider);
      if (name === 'cpu') return name;
      const has = installedProviders();
      const choose = `this install has: ${has.join(', ')}; use --provider cpu`;
      if (!has.includes(name)) {
        throw new UserError(
          `the ${name} execution provider is not installed (its libraries are not in onnxruntime-node); ${choose}`,
        );
      }
      const why = await probeInChild(name);
      if (why !== undefined)
        throw new UserError(
          `the ${name} execution provider cannot start here (${providerFailureReason(why)}); ${choose}`,
        );
      return name;
    })();
    checked.set(provider, p);
  }
  return p;
}
