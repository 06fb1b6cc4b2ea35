/**
 * A diffusers pipeline folder (`unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`, each with
 * `*.safetensors` or `*.bin`, possibly sharded) read as one TensorSource under single-file ldm
 * names, so the rest of the code sees one naming. A folder holding just one model's weights
 * (a diffusers VAE or UNet) is read the same way without the pipeline prefixes.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { toFloat32 } from './dtype.js';
import {
  hfClipToOpenClip,
  isVaeAttnProjection,
  unetLayoutFromKeys,
  unetToLdm,
  vaeLayoutFromKeys,
  vaeToLdm,
} from './diffusers-names.js';
import { openSafetensors } from './safetensors.js';
import {
  DTYPE_BYTES,
  numel,
  type FileLocation,
  type Tensor,
  type TensorInfo,
  type TensorSource,
} from './tensor.js';
import { openCheckpoint } from './torch.js';

/** One output tensor: where its bytes come from and how they are reshaped or combined. */
interface Mapped {
  info: TensorInfo;
  read(): Promise<Tensor>;
  location(): FileLocation | undefined;
}

/** Pick the weight files of one component folder: safetensors over .bin, plain over variants (fp16). */
async function weightFiles(dir: string): Promise<string[]> {
  // Regular files only (a symlink counts when it points at one): a folder named x.safetensors is not weights.
  const names: string[] = [];
  for (const n of await readdir(dir)) {
    if (!n.startsWith('.') && /\.(safetensors|bin)$/.test(n) && (await isFile(join(dir, n)))) names.push(n);
  }
  const groups: ((n: string) => boolean)[] = [
    (n) => n.endsWith('.safetensors') && !/\.[a-z0-9]+\.safetensors$/i.test(n.replace(/-\d+-of-\d+/, '')),
    (n) => n.endsWith('.safetensors'),
    (n) => n.endsWith('.bin') && !/\.[a-z0-9]+\.bin$/i.test(n.replace(/-\d+-of-\d+/, '')),
    (n) => n.endsWith('.bin'),
  ];
  for (const g of groups) {
    const found = names.filter(g).sort();
    if (found.length > 0) {
      // Several non-shard files (say model.safetensors and diffusion_pytorch_model.safetensors): prefer one set.
      const shards = found.filter((n) => /-\d+-of-\d+/.test(n));
      return (shards.length > 0 && shards.length === found.length ? found : [found[0]!]).map((n) =>
        join(dir, n),
      );
    }
  }
  return [];
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (st) => st.isFile(),
    () => false,
  );
}

async function openWeights(path: string): Promise<TensorSource> {
  return path.endsWith('.safetensors') ? openSafetensors(path) : openCheckpoint(path);
}

function direct(src: TensorSource, name: string, as: string, shape?: number[]): Mapped {
  const info = src.info(name)!;
  const outShape = shape ?? info.shape;
  return {
    info: { name: as, dtype: info.dtype, shape: outShape },
    read: async () => ({ ...(await src.read(name)), shape: [...outShape] }),
    location: () => src.location(name),
  };
}

function concatRows(src: TensorSource, names: string[], as: string): Mapped {
  const infos = names.map((n) => src.info(n)!);
  const dtype = infos[0]!.dtype;
  if (infos.some((i) => i.dtype !== dtype || i.shape.slice(1).join() !== infos[0]!.shape.slice(1).join())) {
    throw new UserError(
      `${src.path}: ${names.join(', ')} cannot be joined into ${as} (shapes or dtypes differ)`,
    );
  }
  const shape = [infos.reduce((a, i) => a + (i.shape[0] ?? 1), 0), ...infos[0]!.shape.slice(1)];
  return {
    info: { name: as, dtype, shape },
    read: async () => {
      const parts = await Promise.all(names.map((n) => src.read(n)));
      const data = new Uint8Array(numel(shape) * DTYPE_BYTES[dtype]);
      let off = 0;
      for (const p of parts) {
        data.set(p.data, off);
        off += p.data.byteLength;
      }
      return { dtype, shape, data };
    },
    location: () => undefined,
  };
}

function transposed(src: TensorSource, name: string, as: string): Mapped {
  const info = src.info(name)!;
  if (info.shape.length !== 2) throw new UserError(`${src.path}: ${name} is not a matrix`);
  const [r, c] = info.shape as [number, number];
  const eb = DTYPE_BYTES[info.dtype];
  return {
    info: { name: as, dtype: info.dtype, shape: [c, r] },
    read: async () => {
      const t = await src.read(name);
      const out = new Uint8Array(t.data.byteLength);
      for (let i = 0; i < r; i++) {
        for (let j = 0; j < c; j++)
          out.set(t.data.subarray((i * c + j) * eb, (i * c + j + 1) * eb), (j * r + i) * eb);
      }
      return { dtype: t.dtype, shape: [c, r], data: out };
    },
    location: () => undefined,
  };
}

function mapUnet(src: TensorSource, prefix: string, out: Map<string, Mapped>): void {
  const keys = src.keys();
  const layout = unetLayoutFromKeys(keys);
  for (const k of keys) {
    const ldm = unetToLdm(k, layout);
    if (!ldm)
      throw new UserError(
        `${src.path}: unexpected UNet tensor "${k}" (not a diffusers UNet2DConditionModel name)`,
      );
    out.set(prefix + ldm, direct(src, k, prefix + ldm));
  }
}

function mapVae(src: TensorSource, prefix: string, out: Map<string, Mapped>): void {
  const keys = src.keys();
  const layout = vaeLayoutFromKeys(keys, false);
  for (const k of keys) {
    const ldm = vaeToLdm(k, layout);
    const info = src.info(k)!;
    // diffusers keeps the mid-block attention projections as Linear [C, C]; ldm has 1x1 convs [C, C, 1, 1].
    const shape = isVaeAttnProjection(ldm) && info.shape.length === 2 ? [...info.shape, 1, 1] : undefined;
    out.set(prefix + ldm, direct(src, k, prefix + ldm, shape));
  }
}

function mapClipL(src: TensorSource, prefix: string, out: Map<string, Mapped>): void {
  for (const k of src.keys()) {
    const name = prefix + (k.startsWith('text_model.') ? k : `text_model.${k}`);
    out.set(name, direct(src, k, name));
  }
}

function mapOpenClip(src: TensorSource, prefix: string, out: Map<string, Mapped>): void {
  const inProj = new Map<string, string[]>();
  for (const k of src.keys()) {
    const t = hfClipToOpenClip(k);
    if (t.kind === 'drop') continue;
    if (t.kind === 'rename') out.set(prefix + t.name, direct(src, k, prefix + t.name));
    else if (t.kind === 'transpose') out.set(prefix + t.name, transposed(src, k, prefix + t.name));
    else {
      const parts = inProj.get(t.name) ?? [];
      parts[t.part] = k;
      inProj.set(t.name, parts);
    }
  }
  for (const [name, parts] of inProj) {
    if (parts.filter(Boolean).length !== 3)
      throw new UserError(`${src.path}: ${name} is missing one of q/k/v`);
    out.set(prefix + name, concatRows(src, parts, prefix + name));
  }
}

/**
 * SD2's text encoder is OpenCLIP ViT-H (GELU), SD1's is OpenAI CLIP-L (quick GELU): the
 * component's config.json says which; without one, fall back on the width (1024 for ViT-H).
 */
async function isOpenClip(dir: string, src: TensorSource): Promise<boolean> {
  const cfg = await readSmallJson(join(dir, 'config.json'));
  if (cfg && typeof cfg.hidden_act === 'string') return cfg.hidden_act !== 'quick_gelu';
  const t = src.info('text_model.embeddings.token_embedding.weight');
  return !!t && t.shape[1] === 1024;
}

async function readSmallJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile() || st.size > 1024 * 1024) return undefined;
    const v: unknown = JSON.parse(await readFile(path, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

class DiffusersSource implements TensorSource {
  readonly format = 'diffusers' as const;
  readonly metadata: Record<string, string> = {};

  constructor(
    readonly path: string,
    private readonly parts: TensorSource[],
    private readonly tensors: Map<string, Mapped>,
  ) {}

  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name);
    return t && { ...t.info, shape: [...t.info.shape] };
  }

  read(name: string): Promise<Tensor> {
    const t = this.tensors.get(name);
    if (!t) return Promise.reject(new Error(`tensor "${name}" is not in ${this.path}`));
    return t.read();
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return toFloat32(await this.read(name));
  }

  location(name: string): FileLocation | undefined {
    return this.tensors.get(name)?.location();
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close()));
  }
}

/** Open every weight file of a component folder as one source (shards joined). */
async function openComponent(dir: string): Promise<TensorSource[]> {
  const files = await weightFiles(dir);
  const out: TensorSource[] = [];
  try {
    for (const f of files) out.push(await openWeights(f));
  } catch (e) {
    await Promise.all(out.map((s) => s.close()));
    throw e;
  }
  return out;
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Open a diffusers folder; names come out in single-file ldm form. */
export async function openDiffusersFolder(path: string): Promise<TensorSource> {
  const opened: TensorSource[] = [];
  const tensors = new Map<string, Mapped>();
  const add = (from: Map<string, Mapped>) => {
    for (const [k, v] of from) {
      if (tensors.has(k)) throw new UserError(`${path}: tensor ${k} appears twice (duplicate weight files?)`);
      tensors.set(k, v);
    }
  };
  try {
    const hasTe2 = await isDir(join(path, 'text_encoder_2'));
    const hasTe1 = await isDir(join(path, 'text_encoder'));
    const components: [
      string,
      (s: TensorSource, out: Map<string, Mapped>, dir: string) => Promise<void> | void,
    ][] = [
      ['unet', (s, o) => mapUnet(s, 'model.diffusion_model.', o)],
      ['vae', (s, o) => mapVae(s, 'first_stage_model.', o)],
      [
        'text_encoder',
        async (s, o, dir) => {
          if (hasTe2) mapClipL(s, 'conditioner.embedders.0.transformer.', o);
          else if (await isOpenClip(dir, s)) mapOpenClip(s, 'cond_stage_model.model.', o);
          else mapClipL(s, 'cond_stage_model.transformer.', o);
        },
      ],
      [
        'text_encoder_2',
        (s, o) =>
          mapOpenClip(s, hasTe1 ? 'conditioner.embedders.1.model.' : 'conditioner.embedders.0.model.', o),
      ],
    ];
    let found = false;
    for (const [sub, map] of components) {
      const dir = join(path, sub);
      if (!(await isDir(dir))) continue;
      const sources = await openComponent(dir);
      opened.push(...sources);
      for (const s of sources) {
        const m = new Map<string, Mapped>();
        await map(s, m, dir);
        add(m);
        found = true;
      }
    }
    if (!found) {
      // A single-model folder (config.json + weights), e.g. a diffusers VAE or UNet.
      const sources = await openComponent(path);
      if (sources.length === 0) {
        throw new UserError(
          `${path}: no model weights found (expected unet/, vae/, text_encoder/ with .safetensors or .bin files)`,
        );
      }
      opened.push(...sources);
      for (const s of sources) {
        const m = new Map<string, Mapped>();
        const keys = s.keys();
        if (keys.some((k) => k.startsWith('encoder.down_blocks.'))) mapVae(s, '', m);
        else if (
          keys.some((k) => k.startsWith('down_blocks.')) &&
          keys.includes('conv_in.weight') &&
          !keys.some((k) => k.startsWith('controlnet_'))
        ) {
          mapUnet(s, '', m);
        } else for (const k of keys) m.set(k, direct(s, k, k));
        add(m);
      }
    }
    return new DiffusersSource(path, opened, tensors);
  } catch (e) {
    await Promise.all(opened.map((s) => s.close()));
    throw e;
  }
}
