/**
 * Every case of the tiny-sd2 goldens (cases.json under $SDSTUDIO_GOLDEN): the open_clip text tower
 * (SD2's penultimate + ln_final), the v-predicting UNet with linear projections and 16-wide heads
 * (from the sidecar), the VAE, the end-to-end v-prediction txt2img, and the fp16 checkpoint. CPU,
 * float32, at the goldens' tolerances; one loaded model per checkpoint for the whole file.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { clipHiddenName, clipNormedName } from '../../src/models/clip-text.js';
import type { TensorF32 } from '../../src/runtime/sd1.js';
import {
  checkE2e,
  compareOutputs,
  GoldenSet,
  runTxt2img,
  type FamilyCase,
  type Tol,
} from './family-goldens.js';

const gs = new GoldenSet('tiny-sd2');
afterAll(() => gs.close());

const single = (c: FamilyCase): Tol => c.tolerance as Tol;

/** Every output of the text tower for a golden's ids, by the keys cases.json uses. */
async function textOutputs(c: FamilyCase, file: string, idsName: string, checkpoint = c.checkpoint) {
  const m = await gs.model(checkpoint);
  const { ids, dims } = await gs.ids(file, idsName);
  const L = m.towers[0]!.config.layers;
  const embeds = await m.tokenEmbeddings(ids, dims[0]!);
  const r = await m.textOutputs(embeds, m.textOutputNames());
  const conditioning = await m.encodeConditioning([embeds], [ids]);
  const hidden: TensorF32[] = [];
  for (let i = 0; i <= L; i++) hidden.push(r[clipHiddenName(i)]!);
  return {
    // What the model conditions on must be the penultimate output, whatever clip skip says (A1111).
    penultimate: conditioning.context,
    penultimate_clip_skip_2: await m.encodeEmbeddings(embeds, 2),
    last: r[clipNormedName(L)]!,
    hidden_states: hidden,
  };
}

async function unetOut(
  c: FamilyCase,
  checkpoint = c.checkpoint,
  file = c.file,
  prefix?: string,
): Promise<TensorF32> {
  const m = await gs.model(checkpoint);
  const inp = c.inputs as Record<string, string>;
  const name = (k: string) => (prefix ? `${prefix}.${k}` : inp[k]!);
  return m.unet({
    x: await gs.tensor(file, name('x')),
    t: await gs.tensor(file, name('t')),
    context: await gs.tensor(file, name('context')),
  });
}

describe('tiny-sd2 goldens (cpu, float32)', () => {
  it('has cases', () => expect(gs.cases.length).toBeGreaterThan(0));

  for (const c of gs.cases) {
    const label = `${c.kind}${c.name ? ` ${c.name}` : ''} (${c.checkpoint})`;
    it(label, async () => {
      const m = await gs.model(c.checkpoint);
      switch (c.kind) {
        case 'openclip_text_encoder': {
          expect(m.family).toBe('sd2');
          const o = await textOutputs(c, c.file, (c.inputs as Record<string, string>).input_ids!);
          await compareOutputs(gs, c, o, () => single(c));
          // A1111 ignores clip skip on SD2: skip 2 conditions on the same penultimate output.
          expect(o.penultimate_clip_skip_2.data).toEqual(o.penultimate.data);
          return;
        }
        case 'unet': {
          expect(m.prediction).toBe(c.prediction);
          await compareOutputs(gs, c, { [Object.keys(c.outputs)[0]!]: await unetOut(c) }, () => single(c));
          return;
        }
        case 'vae_decode': {
          const z = await gs.tensor(c.file, (c.inputs as Record<string, string>).z!);
          await compareOutputs(gs, c, { image: await m.vaeDecode(z) }, () => single(c));
          return;
        }
        case 'vae_encode': {
          const inp = c.inputs as Record<string, string>;
          const post = await m.vaeEncode(
            await gs.tensor(c.file, inp.image!),
            await gs.tensor(c.file, inp.noise!),
          );
          await compareOutputs(gs, c, post, () => single(c));
          return;
        }
        case 'txt2img': {
          expect(m.scaleFactor).toBe((c.params as { scale_factor: number }).scale_factor);
          const r = await runTxt2img(gs, c, m, c.file);
          const tol = c.tolerance as Record<string, Tol>;
          await checkE2e(gs, c, c.file, r, (_k, group) => tol[group]!);
          return;
        }
        case 'fp16_checkpoint': {
          await fp16Case(c);
          return;
        }
        default:
          throw new Error(`no test for case kind "${c.kind}" of tiny-sd2`);
      }
    });
  }
});

/** Each output of the fp16 case, computed from the fp16 checkpoint with the fp32 goldens' inputs. */
async function fp16Case(c: FamilyCase): Promise<void> {
  const tols = c.tolerance as Record<string, Tol>;
  const tol = (k: string) => tols[k] ?? tols.default!;
  const golden = await gs.file(c.file);
  const keys = Object.keys(c.outputs);
  expect(keys.length).toBeGreaterThan(0);
  const e2eKeys: Record<string, string> = {};
  let e2eFile: string | undefined;
  for (const key of keys) {
    const where = c.outputs[key] as string;
    const [file, spec] = where.split(':') as [string, string | undefined];
    const part = key.split('.')[0]!;
    const ref = { data: await golden.readFloat32(key), dims: golden.info(key)!.shape };
    let ours: TensorF32;
    if (part === 'text_encoder') {
      const o = await textOutputs(c, file, spec!, c.checkpoint);
      ours = o[key.split('.')[1] as 'penultimate'];
    } else if (part === 'unet') {
      const prefix = spec!.replace(/\.\*$/, '');
      const base = gs.cases.find((k) => k.kind === 'unet' && k.name === prefix)!;
      ours = await unetOut(base, c.checkpoint, file, prefix);
    } else if (part === 'vae') {
      ours = await (await gs.model(c.checkpoint)).vaeDecode(await gs.tensor(file, spec!));
    } else if (part === 'e2e') {
      e2eKeys[key.slice(4)] = key;
      e2eFile = file;
      continue;
    } else throw new Error(`fp16 case: unknown output ${key}`);
    expect(ours.dims, key).toEqual(ref.dims);
    const { expectClose } = await import('./family-goldens.js');
    expectClose(key, ours.data, ref.data, tol(key));
  }
  if (e2eFile) {
    const base = gs.cases.find((k) => k.kind === 'txt2img' && k.file === e2eFile);
    expect(base, `a txt2img case on ${e2eFile}`).toBeDefined();
    const r = await runTxt2img(gs, base!, await gs.model(c.checkpoint), e2eFile);
    await checkE2e(gs, c, c.file, r, (k) => tol(`e2e.${k}`), e2eKeys);
  }
}
