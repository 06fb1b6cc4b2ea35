/**
 * Every case of the tiny-sdxl goldens (cases.json under $SDSTUDIO_GOLDEN): both text towers
 * (CLIP-L hidden −2, bigG penultimate without ln_final and its pooled projection), the `vector`
 * conditioning (sizes, crop, aesthetic score), the base and refiner UNets (label_emb, per-level
 * transformer depth), the VAE, the end-to-end txt2img with the empty negative zeroed, and the fp16
 * checkpoints. CPU, float32, at the goldens' tolerances; one loaded model per checkpoint.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { clipHiddenName, clipNormedName } from '../../src/models/clip-text.js';
import { REFINER_AESTHETIC, sdxlVector, type SdxlSizes } from '../../src/models/sdxl-vector.js';
import type { Sd1Model, TensorF32 } from '../../src/runtime/sd1.js';
import {
  checkE2e,
  compareOutputs,
  expectClose,
  GoldenSet,
  runTxt2img,
  type FamilyCase,
  type Tol,
} from './family-goldens.js';

const gs = new GoldenSet('tiny-sdxl');
afterAll(() => gs.close());

const single = (c: FamilyCase): Tol => c.tolerance as Tol;
const inputsOf = (c: FamilyCase) => c.inputs as Record<string, unknown>;
const str = (v: unknown) => {
  if (typeof v !== 'string') throw new Error(`expected a tensor name, got ${JSON.stringify(v)}`);
  return v;
};
/** The base conditioner's outputs for ids of both towers, with the case's literal sizes for every row. */
async function baseText(m: Sd1Model, file: string, idsL: string, idsG: string, sizes: number[]) {
  const l = await gs.ids(file, idsL);
  const g = await gs.ids(file, idsG);
  const batch = l.dims[0]!;
  const eL = await m.tokenEmbeddings(l.ids, batch, 0);
  const eG = await m.tokenEmbeddings(g.ids, batch, 1);
  const rL = await m.textOutputs(eL, m.textOutputNames(0), 0);
  const rG = await m.textOutputs(eG, m.textOutputNames(1), 1);
  const cond = await m.encodeConditioning([eL, eG], [l.ids, g.ids]);
  const LL = m.towers[0]!.config.layers;
  const LG = m.towers[1]!.config.layers;
  const s: SdxlSizes = {
    originalSize: [sizes[0]!, sizes[1]!],
    cropTopLeft: [sizes[2]!, sizes[3]!],
    targetSize: [sizes[4]!, sizes[5]!],
  };
  const hidden: TensorF32[] = [];
  for (let i = 0; i <= LL; i++) hidden.push(rL[clipHiddenName(i)]!);
  return {
    'clip_l.hidden': rL[clipHiddenName(LL - 1)]!,
    'clip_l.last_hidden_state': rL[clipNormedName(LL)]!,
    'clip_l.hidden_states': hidden,
    'clip_g.penultimate': rG[clipHiddenName(LG - 1)]!,
    'clip_g.last': rG[clipHiddenName(LG)]!,
    'clip_g.pooled': cond.pooled!,
    crossattn: cond.context,
    vector: sdxlVector(m.config.vector!, cond.pooled!, s),
  };
}

async function unetOut(m: Sd1Model, file: string, names: Record<string, string>): Promise<TensorF32> {
  return m.unet({
    x: await gs.tensor(file, names.x!),
    t: await gs.tensor(file, names.t!),
    context: await gs.tensor(file, names.context!),
    y: await gs.tensor(file, names.y!),
  });
}

/** The refiner conditioner for one prompt: bigG penultimate context and vector with the aesthetic score. */
async function refinerConditioning(
  m: Sd1Model,
  file: string,
  ids: string,
  size: number[],
  crop: number[],
  score: number,
) {
  const g = await gs.ids(file, ids);
  const cond = await m.encodeIdsAll([g.ids], g.dims[0]!);
  return {
    crossattn: cond.context,
    vector: sdxlVector(m.config.vector!, cond.pooled!, {
      originalSize: [size[0]!, size[1]!],
      cropTopLeft: [crop[0]!, crop[1]!],
      aestheticScore: score,
    }),
  };
}

describe('tiny-sdxl goldens (cpu, float32)', () => {
  it('has cases', () => expect(gs.cases.length).toBeGreaterThan(0));

  for (const c of gs.cases) {
    const label = `${c.kind}${c.name ? ` ${c.name}` : ''} (${c.checkpoint})`;
    it(label, async () => {
      const m = await gs.model(c.checkpoint);
      const inp = inputsOf(c);
      switch (c.kind) {
        case 'sdxl_text_encoders': {
          expect(m.family).toBe('sdxl');
          const o = await baseText(
            m,
            c.file,
            str(inp.input_ids_l),
            str(inp.input_ids_g),
            inp.sizes as number[],
          );
          const tv = c.tolerance_vector as Tol;
          await compareOutputs(gs, c, o, (k) => (k === 'vector' ? tv : single(c)));
          return;
        }
        case 'sdxl_vector_conditioning': {
          const sz = c.sizes as Record<string, number[]>;
          const pooled = await gs.tensor(c.file, str(inp.pooled));
          // The sizes tensor holds the same six numbers as the literals.
          const t = await gs.tensor(c.file, str(inp.sizes));
          expect([...t.data]).toEqual([
            ...sz.original_size_hw!,
            ...sz.crop_coords_top_left!,
            ...sz.target_size_hw!,
          ]);
          const v = sdxlVector(m.config.vector!, pooled, {
            originalSize: sz.original_size_hw as [number, number],
            cropTopLeft: sz.crop_coords_top_left as [number, number],
            targetSize: sz.target_size_hw as [number, number],
          });
          const P = m.config.vector!.pooledDim;
          const d2 = 2 * m.config.vector!.sizeEmbedDim;
          const part = (k: number) => ({ data: v.data.slice(P + k * d2, P + (k + 1) * d2), dims: [1, d2] });
          await compareOutputs(
            gs,
            c,
            { original_size_emb: part(0), crop_coords_emb: part(1), target_size_emb: part(2), vector: v },
            () => single(c),
          );
          return;
        }
        case 'unet':
        case 'refiner_unet': {
          if (c.kind === 'unet') expect(m.prediction).toBe(c.prediction);
          else expect(m.family).toBe('sdxl-refiner');
          const eps = await unetOut(m, c.file, inp as Record<string, string>);
          await compareOutputs(gs, c, { [Object.keys(c.outputs)[0]!]: eps }, () => single(c));
          return;
        }
        case 'vae_decode': {
          const z = await gs.tensor(c.file, str(inp.z));
          await compareOutputs(gs, c, { image: await m.vaeDecode(z) }, () => single(c));
          return;
        }
        case 'vae_encode': {
          const post = await m.vaeEncode(
            await gs.tensor(c.file, str(inp.image)),
            await gs.tensor(c.file, str(inp.noise)),
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
        case 'refiner_text_encoder': {
          const g = await gs.ids(c.file, str(inp.input_ids_g));
          const cond = await m.encodeIdsAll([g.ids], g.dims[0]!);
          await compareOutputs(
            gs,
            c,
            { 'clip_g.penultimate': cond.context, 'clip_g.pooled': cond.pooled! },
            () => single(c),
          );
          return;
        }
        case 'refiner_conditioning': {
          const size = await gs.tensor(c.file, str(inp.size_hw));
          const score = await gs.tensor(c.file, str(inp.aesthetic_score));
          expect(score.data[0]).toBe(c.aesthetic_score);
          const o = await refinerConditioning(
            m,
            c.file,
            str(inp.input_ids_g),
            [...size.data],
            inp.crop_coords_top_left as number[],
            score.data[0]!,
          );
          await compareOutputs(gs, c, o, () => single(c));
          return;
        }
        case 'fp16_checkpoint':
          await fp16Case(c);
          return;
        default:
          throw new Error(`no test for case kind "${c.kind}" of tiny-sdxl`);
      }
    });
  }

  it('A1111 aesthetic defaults are 6.0 / 2.5 (the refiner conditioning cases use them)', () => {
    const scores = gs.cases.filter((c) => c.kind === 'refiner_conditioning').map((c) => c.aesthetic_score);
    expect(scores.length).toBeGreaterThan(0);
    for (const s of scores) expect([REFINER_AESTHETIC.prompt, REFINER_AESTHETIC.negative]).toContain(s);
  });
});

/** The fp16 case: each output recomputed from the fp16 checkpoints with the fp32 goldens' inputs. */
async function fp16Case(c: FamilyCase): Promise<void> {
  const tols = c.tolerance as Record<string, Tol>;
  const tol = (k: string) => tols[k] ?? tols.default!;
  const golden = await gs.file(c.file);
  const keys = Object.keys(c.outputs);
  expect(keys.length).toBeGreaterThan(0);
  const e2eKeys: Record<string, string> = {};
  let e2eFile: string | undefined;
  // The refiner's fp16 checkpoint: the fp16 file whose refiner case names a refiner checkpoint.
  const refinerCase = gs.cases.find((k) => k.kind.startsWith('refiner_'));
  const refinerFp16 = refinerCase?.checkpoint.replace(/\.safetensors$/, '-fp16.safetensors');
  for (const key of keys) {
    const where = c.outputs[key] as string;
    const file = where.split(/[: ]/)[0]!;
    const spec = /:([^\s]+)/.exec(where)?.[1]?.replace(/\.\*$/, '');
    const part = key.split('.')[0]!;
    const ref = { data: await golden.readFloat32(key), dims: golden.info(key)!.shape };
    let ours: TensorF32;
    if (part === 'text_encoders') {
      const base = gs.cases.find((k) => k.file === file && k.kind === 'sdxl_text_encoders')!;
      const bi = inputsOf(base);
      const o = await baseText(
        await gs.model(c.checkpoint),
        file,
        str(bi.input_ids_l),
        str(bi.input_ids_g),
        bi.sizes as number[],
      );
      ours = o[key.slice(part.length + 1) as 'crossattn' | 'vector'];
    } else if (part === 'unet') {
      const base = gs.cases.find((k) => k.kind === 'unet' && k.name === spec)!;
      ours = await unetOut(await gs.model(c.checkpoint), file, inputsOf(base) as Record<string, string>);
    } else if (part === 'vae') {
      ours = await (await gs.model(c.checkpoint)).vaeDecode(await gs.tensor(file, spec!));
    } else if (part === 'refiner') {
      expect(refinerFp16, 'a refiner checkpoint in the set').toBeDefined();
      const m = await gs.model(refinerFp16!);
      const base = gs.cases.find((k) => k.kind === 'refiner_unet' && k.name === spec)!;
      const names = inputsOf(base) as Record<string, string>;
      if (spec === 'cond') {
        // Its context and vector come from the fp16 refiner's own conditioner (README), with the
        // inputs of the refiner_conditioning case it names.
        const condCase = gs.cases.find(
          (k) => k.kind === 'refiner_conditioning' && Object.values(k.outputs).includes(names.context!),
        )!;
        const ci = inputsOf(condCase);
        const size = await gs.tensor(condCase.file, str(ci.size_hw));
        const o = await refinerConditioning(
          m,
          condCase.file,
          str(ci.input_ids_g),
          [...size.data],
          ci.crop_coords_top_left as number[],
          condCase.aesthetic_score as number,
        );
        ours = await m.unet({
          x: await gs.tensor(file, names.x!),
          t: await gs.tensor(file, names.t!),
          context: o.crossattn,
          y: o.vector,
        });
      } else ours = await unetOut(m, file, names);
    } else if (part === 'e2e') {
      e2eKeys[key.slice(4)] = key;
      e2eFile = file;
      continue;
    } else throw new Error(`fp16 case: unknown output ${key}`);
    expect(ours.dims, key).toEqual(ref.dims);
    expectClose(key, ours.data, ref.data, tol(key));
  }
  if (e2eFile) {
    const base = gs.cases.find((k) => k.kind === 'txt2img' && k.file === e2eFile);
    expect(base, `a txt2img case on ${e2eFile}`).toBeDefined();
    const r = await runTxt2img(gs, base!, await gs.model(c.checkpoint), e2eFile);
    await checkE2e(gs, c, c.file, r, (k) => tol(`e2e.${k}`), e2eKeys);
  }
}
