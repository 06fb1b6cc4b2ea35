/**
 * Every case of the tiny-sd goldens (cases.json) against our ONNX networks, from $SDSTUDIO_GOLDEN:
 * one suite, run per execution provider and arithmetic by the *.test.ts files of this folder. The
 * end-to-end txt2img cases belong to the pipeline tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSd1, type Sd1LoadOptions, type Sd1Model, type TensorF32 } from '../../src/runtime/sd1.js';
import { goldenPath } from '../helpers/golden.js';
import {
  closeGoldenFiles,
  expectClose,
  goldenIds,
  goldenTensor,
  loadCases,
  scaleFactor,
  TINY,
  type GoldenCase,
  type Tolerance,
} from './golden.js';

const str = (v: unknown): string => {
  if (typeof v !== 'string') throw new Error(`expected a tensor name, got ${JSON.stringify(v)}`);
  return v;
};

/** All text encoder outputs for ids in a golden file, keyed by the golden's semantic names. */
async function textEncoderOutputs(m: Sd1Model, file: string, idsName: string) {
  const { ids, dims } = await goldenIds(file, idsName);
  const embeds = await m.tokenEmbeddings(ids, dims[0]!);
  const r = await m.textOutputs(embeds, m.textOutputNames());
  const L = m.config.text.layers;
  return {
    last_hidden_state: r[`normed.${L}`]!,
    penultimate_hidden_state: r[`hidden_states.${L - 1}`]!,
    clip_skip2: await m.encodeEmbeddings(embeds, 2),
    hidden: (i: number) => r[`hidden_states.${i}`]!,
    lastViaIds: await m.encodeIds(ids, dims[0]!, 1),
  };
}

async function unetInputs(file: string, names: { x: string; t: string; context: string }) {
  return {
    x: await goldenTensor(file, names.x),
    t: await goldenTensor(file, names.t),
    context: await goldenTensor(file, names.context),
  };
}

export interface ConformanceOptions {
  /** Suite title (names the provider and arithmetic). */
  title: string;
  /** How the checkpoints are loaded (provider, threads, …; `debug` and `cacheDir` are set here). */
  load: Sd1LoadOptions;
  /** The tolerance a case's tensor is held to, from the golden's own (default: that one). */
  tolerance?: (golden: Tolerance) => Tolerance;
}

export function conformanceSuite(opts: ConformanceOptions): void {
  const cacheDir = mkdtempSync(join(tmpdir(), 'sdstudio-engine-test-'));
  const models = new Map<string, Promise<Sd1Model>>();
  const model = (checkpoint: string): Promise<Sd1Model> => {
    let m = models.get(checkpoint);
    if (!m) {
      m = loadSd1(goldenPath(TINY, checkpoint), { ...opts.load, cacheDir, debug: true });
      models.set(checkpoint, m);
    }
    return m;
  };
  const adjust = opts.tolerance ?? ((t: Tolerance) => t);

  afterAll(async () => {
    for (const m of models.values()) await (await m).release();
    await closeGoldenFiles();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  const tol = (c: GoldenCase): Tolerance => adjust(c.tolerance as Tolerance);
  const runners: Record<string, (c: GoldenCase) => Promise<void>> = {
    async text_encoder(c) {
      const m = await model(c.checkpoint);
      const out = await textEncoderOutputs(m, c.file, str(c.inputs!.input_ids));
      const outputs = c.outputs as Record<string, string | string[]>;
      for (const [key, ref] of Object.entries(outputs)) {
        if (key === 'hidden_states') {
          const names = ref as string[];
          expect(names.length, 'hidden state count').toBe(m.config.text.layers + 1);
          for (let i = 0; i < names.length; i++) {
            expectClose(names[i]!, out.hidden(i), await goldenTensor(c.file, names[i]!), tol(c));
          }
          continue;
        }
        const ours = out[key as 'last_hidden_state' | 'penultimate_hidden_state' | 'clip_skip2'];
        if (!ours) throw new Error(`unknown text encoder output ${key}`);
        expectClose(key, ours, await goldenTensor(c.file, str(ref)), tol(c));
      }
      // The ids path equals the embeddings path.
      expectClose(
        'encodeIds',
        out.lastViaIds,
        await goldenTensor(c.file, str(outputs.last_hidden_state)),
        tol(c),
      );
    },

    async timestep_embedding(c) {
      const m = await model(c.checkpoint);
      expect(m.config.unet.modelChannels).toBe(c.dim);
      const r = await m.timeEmbedding(await goldenTensor(c.file, str(c.inputs!.t)));
      const outputs = c.outputs as Record<string, string>;
      expectClose('embedding', r.embedding, await goldenTensor(c.file, str(outputs.embedding)), tol(c));
      expectClose(
        'time_embed_out',
        r.timeEmbedOut,
        await goldenTensor(c.file, str(outputs.time_embed_out)),
        tol(c),
      );
    },

    async unet(c) {
      const m = await model(c.checkpoint);
      const inp = c.inputs as { x: string; t: string; context: string };
      const eps = await m.unet(await unetInputs(c.file, inp));
      expectClose(
        'eps',
        eps,
        await goldenTensor(c.file, str((c.outputs as Record<string, string>).eps)),
        tol(c),
      );
    },

    async unet_intermediates(c) {
      const m = await model(c.checkpoint);
      const same = c.same_inputs_as as { file: string; x: string; t: string; context: string };
      const names = c.outputs as string[];
      const r = await m.unetOutputs(await unetInputs(same.file, same), names);
      for (const n of names) expectClose(n, r[n]!, await goldenTensor(c.file, n), tol(c));
    },

    async vae_decode(c) {
      const m = await model(c.checkpoint);
      const image = await m.vaeDecode(await goldenTensor(c.file, str(c.inputs!.z)));
      expectClose(
        'image',
        image,
        await goldenTensor(c.file, str((c.outputs as Record<string, string>).image)),
        tol(c),
      );
    },

    async vae_encode(c) {
      const m = await model(c.checkpoint);
      const p = await m.vaeEncode(
        await goldenTensor(c.file, str(c.inputs!.image)),
        await goldenTensor(c.file, str(c.inputs!.noise)),
      );
      const scale = scaleFactor(c.config);
      const scaled: TensorF32 = { data: p.sample.data.map((v) => v * scale), dims: p.sample.dims };
      const ours: Record<string, TensorF32> = { ...p, sample_scaled: scaled };
      for (const [key, ref] of Object.entries(c.outputs as Record<string, string>)) {
        if (!ours[key]) throw new Error(`unknown VAE encode output ${key}`);
        expectClose(key, ours[key], await goldenTensor(c.file, ref), tol(c));
      }
    },

    async vae_decode_intermediates(c) {
      const m = await model(c.checkpoint);
      const outputs = c.outputs as Record<string, string>;
      const names = [...(c.intermediates ?? [])];
      const r = await m.vaeDecodeOutputs(await goldenTensor(c.file, str(c.inputs!.z)), ['image', ...names]);
      expectClose('image', r.image!, await goldenTensor(c.file, str(outputs.image)), tol(c));
      for (const n of names) expectClose(n, r[n]!, await goldenTensor(c.file, n), tol(c));
    },

    async vae_encode_intermediates(c) {
      const m = await model(c.checkpoint);
      const names = [...(c.intermediates ?? [])];
      const r = await m.vaeEncodeOutputs(await goldenTensor(c.file, str(c.inputs!.image)), undefined, names);
      for (const n of names) expectClose(n, r[n]!, await goldenTensor(c.file, n), tol(c));
    },

    async fp16_checkpoint(c) {
      const m = await model(c.checkpoint);
      const tols = c.tolerance as Record<string, Tolerance>;
      let checked = 0;
      for (const [name, from] of Object.entries(c.outputs as Record<string, string>)) {
        if (name.startsWith('e2e.')) continue; // the txt2img pipeline's tests own these
        const t = adjust(tols[name] ?? tols.default!);
        const ref = await goldenTensor(c.file, name);
        const [file, tensor] = from.split(':') as [string, string];
        const [part, ...rest] = name.split('.');
        let ours: TensorF32;
        if (part === 'text_encoder' && rest.join('.') === 'last_hidden_state') {
          const { ids, dims } = await goldenIds(file, tensor);
          ours = await m.encodeIds(ids, dims[0]!, 1);
        } else if (part === 'unet' && rest[rest.length - 1] === 'eps' && tensor.endsWith('.*')) {
          const pre = tensor.slice(0, -2);
          ours = await m.unet(
            await unetInputs(file, { x: `${pre}.x`, t: `${pre}.t`, context: `${pre}.context` }),
          );
        } else if (part === 'vae' && rest.join('.') === 'decode.image') {
          ours = await m.vaeDecode(await goldenTensor(file, tensor));
        } else if (part === 'vae' && rest[0] === 'encode') {
          const p = await m.vaeEncode(await goldenTensor(file, tensor));
          const key = rest[1] as 'mean' | 'std' | 'logvar' | 'moments';
          if (!p[key]) throw new Error(`unknown fp16 VAE encode output ${name}`);
          ours = p[key];
        } else {
          throw new Error(`fp16 golden ${name} (${from}) is not understood by this test`);
        }
        expectClose(name, ours, ref, t);
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    },
  };

  /** Kinds owned by other parts' tests (the end-to-end pipeline). */
  const ELSEWHERE = new Set(['txt2img']);

  describe(opts.title, () => {
    const cases = loadCases();
    it('has cases', () => expect(cases.length).toBeGreaterThan(0));
    for (const c of cases) {
      if (ELSEWHERE.has(c.kind)) continue;
      it(`${c.kind}${c.name ? ` ${c.name}` : ''} (${c.checkpoint})`, async () => {
        const run = runners[c.kind];
        if (!run) throw new Error(`no runner for golden case kind "${c.kind}"`);
        await run(c);
      });
    }
  });
}
