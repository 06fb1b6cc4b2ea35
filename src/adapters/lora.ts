/**
 * LoRA / LyCORIS networks: load a file against a checkpoint's layer table (A1111 v1.10.1
 * `load_network`) and compute the patched weights of several networks in prompt order
 * (`network_apply_weights`, `lora_functional` off).
 */
import type { TensorSource } from '../formats/tensor.js';
import { UserError } from '../util/errors.js';
import {
  diffusersToKohya,
  matchDiffusersModule,
  matchModuleName,
  splitA1111,
  type LayerInfo,
  type LayerTable,
} from './lora-keys.js';
import { matmulOptions, patchLowRankOrt } from './fast-matmul.js';
import {
  addUpdown,
  ApplyError,
  calcScale,
  computeUpdown,
  multiplierKind,
  numelOf,
  type F32Tensor,
  type ModuleClass,
  type NetworkModule,
} from './lora-modules.js';

export interface LoadOptions {
  /** The name the network is known by (file name without extension); default from the path. */
  name?: string;
  /**
   * Rename diffusers/PEFT keys (`unet.….lora_A.weight`) to kohya names before matching (default
   * true). false reproduces A1111 1.10, which matches none of them.
   */
  diffusersNames?: boolean;
}

export interface LoraNetwork {
  name: string;
  path: string;
  metadata: Record<string, string>;
  /** Matched layer name (A1111 `sd_key`) → module, in file order. */
  modules: Map<string, NetworkModule>;
  /** A1111's `keys_failed_to_match`: file key → the layer name last tried. */
  unmatched: Map<string, string>;
  /** How many file keys matched a layer. */
  matchedKeys: number;
  /**
   * `bundle_emb.<name>.…` keys: textual-inversion data bundled in the file, per embedding name,
   * laid out as an embedding file's dict (`string_to_param: {'*': …}` or `clip_l`/`clip_g`).
   */
  bundled: Map<string, Record<string, unknown>>;
}

/** The `multiplier` parts of one `<lora:…>` as A1111 keeps them on a loaded network. */
export interface ActiveNetwork {
  network: LoraNetwork;
  te: number;
  unet: number;
  dynDim: number | null;
}

function scalar(t: F32Tensor, what: string): number {
  if (t.data.length !== 1) throw new UserError(`${what} must be a single number, found shape [${t.shape}]`);
  return t.data[0]!;
}

function reshapeTo(t: F32Tensor, shape: number[], what: string): F32Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const out = shape.map((d) => (d === -1 ? (known === 0 ? 0 : t.data.length / known) : d));
  if (!out.every((d) => Number.isInteger(d)) || numelOf(out) !== t.data.length)
    throw new UserError(`${what}: a tensor of shape [${t.shape}] cannot be reshaped to [${out}]`);
  return { shape: out, data: t.data };
}

/** NetworkModuleLora's `create_module`: weights laid out as the Linear/Conv2d A1111 builds for them. */
function loraWeight(layer: LayerInfo, part: string, t: F32Tensor, key: string): F32Tensor {
  if (layer.type === 'Linear') return reshapeTo(t, [t.shape[0] ?? 1, -1], key);
  if (layer.type === 'Conv2d') {
    const [kh, kw] = layer.kernel ?? [1, 1];
    if (part === 'lora_down.weight') {
      const w = t.shape.length === 2 ? reshapeTo(t, [t.shape[0]!, -1, 1, 1], key) : t;
      if (w.shape.length !== 4)
        throw new UserError(`${key}: expected a 2-D or 4-D tensor, found [${t.shape}]`);
      if (w.shape[2] !== 1 || w.shape[3] !== 1) return reshapeTo(w, [w.shape[0]!, w.shape[1]!, kh, kw], key);
      return reshapeTo(w, [w.shape[0]!, w.shape[1]!, 1, 1], key);
    }
    if (part === 'lora_mid.weight') return reshapeTo(t, [t.shape[0]!, t.shape[1] ?? 1, kh, kw], key);
    return reshapeTo(t, [t.shape[0]!, t.shape[1] ?? 1, 1, 1], key);
  }
  throw new UserError(
    `${key}: LoRA layer matched a layer with unsupported type ${layer.type} (${layer.name})`,
  );
}

const UNSUPPORTED_TYPES: [string[], string][] = [
  [['w_norm', 'b_norm'], 'norm'],
  [['a1.weight', 'a2.weight', 'b1.weight', 'b2.weight'], 'GLoRA'],
  [['oft_blocks'], 'OFT'],
  [['oft_diag'], 'OFT'],
];

function createModule(
  group: { networkKey: string; sdKey: string; layer: LayerInfo; w: Map<string, F32Tensor> },
  path: string,
): NetworkModule {
  const w = group.w;
  const base = { networkKey: group.networkKey, sdKey: group.sdKey, layer: group.layer };
  const num = (part: string) => (w.has(part) ? scalar(w.get(part)!, `${group.networkKey}: ${part}`) : null);
  const alpha = num('alpha');
  const scale = num('scale');
  const make = (
    moduleClass: ModuleClass,
    parts: Record<string, F32Tensor>,
    dim: number | null,
    extra = {},
  ) => ({
    ...base,
    moduleClass,
    w: parts,
    alpha,
    scale,
    dim,
    ...extra,
  });
  const lora = (
    up: F32Tensor,
    down: F32Tensor,
    mid: F32Tensor | undefined,
    keepAlpha: boolean,
  ): NetworkModule => {
    const parts: Record<string, F32Tensor> = {
      'lora_up.weight': loraWeight(group.layer, 'lora_up.weight', up, group.networkKey),
      'lora_down.weight': loraWeight(group.layer, 'lora_down.weight', down, group.networkKey),
    };
    if (mid) parts['lora_mid.weight'] = loraWeight(group.layer, 'lora_mid.weight', mid, group.networkKey);
    const bias = keepAlpha ? w.get('bias') : undefined;
    if (bias) parts['bias'] = bias;
    const m = make('NetworkModuleLora', parts, down.shape[0] ?? null);
    // A1111 renames lora_A/lora_B by rebuilding the weights dict from those two alone: alpha is lost.
    return keepAlpha ? m : { ...m, alpha: null, scale: null };
  };
  if (w.has('lora_up.weight') && w.has('lora_down.weight'))
    return lora(w.get('lora_up.weight')!, w.get('lora_down.weight')!, w.get('lora_mid.weight'), true);
  if (w.has('lora_A.weight') && w.has('lora_B.weight'))
    return lora(w.get('lora_B.weight')!, w.get('lora_A.weight')!, undefined, false);
  const all = Object.fromEntries(w);
  if (['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'].every((k) => w.has(k)))
    return make('NetworkModuleHada', all, w.get('hada_w1_b')!.shape[0] ?? null);
  if (w.has('weight')) {
    const onInput = w.get('on_input');
    if (!onInput) throw new UserError(`${path}: IA3 module ${group.networkKey} has no on_input`);
    return make('NetworkModuleIa3', all, null, { onInput: scalar(onInput, 'on_input') !== 0 });
  }
  const has1 = w.has('lokr_w1') || (w.has('lokr_w1_a') && w.has('lokr_w1_b'));
  const has2 = w.has('lokr_w2') || (w.has('lokr_w2_a') && w.has('lokr_w2_b'));
  if (has1 && has2) {
    let dim: number | null = null;
    if (w.has('lokr_w1_b')) dim = w.get('lokr_w1_b')!.shape[0]!;
    if (w.has('lokr_w2_b')) dim = w.get('lokr_w2_b')!.shape[0]!;
    return make('NetworkModuleLokr', all, dim);
  }
  if (w.has('diff')) return make('NetworkModuleFull', all, null);
  const kind = UNSUPPORTED_TYPES.find(([parts]) => parts.some((p) => w.has(p)))?.[1];
  throw new UserError(
    kind
      ? `${path}: ${group.networkKey} is a LyCORIS ${kind} module, which SD Studio does not apply yet`
      : `${path}: no network type accepts the keys of ${group.sdKey}: ${[...w.keys()].join(', ')}`,
  );
}

async function readTensor(file: TensorSource, key: string) {
  try {
    return await file.read(key);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${file.path}: cannot read tensor ${key}: ${(e as Error).message}`);
  }
}

/** Read a LoRA/LyCORIS file and match it against a checkpoint's layers. Bad files are UserErrors. */
export async function loadNetwork(
  file: TensorSource,
  table: LayerTable,
  opts: LoadOptions = {},
): Promise<LoraNetwork> {
  const name = opts.name ?? file.path.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '');
  const unmatched = new Map<string, string>();
  const groups = new Map<
    string,
    { networkKey: string; sdKey: string; layer: LayerInfo; w: Map<string, F32Tensor> }
  >();
  const keys = [...file.keys()].sort();
  let matchedKeys = 0;
  const bundled = new Map<string, Record<string, unknown>>();
  for (const key of keys) {
    // A1111 load_network: `bundle_emb.NAME.string_to_param.*` / `bundle_emb.NAME.clip_l` become
    // embeddings registered while the network is loaded. (A1111 also lists them as unmatched
    // keys, in its debug log only; they are not reported as such here.)
    const b = /^bundle_emb\.([^.]+)\.(.+)$/.exec(key);
    if (b) {
      const data = bundled.get(b[1]!) ?? {};
      const t = await readTensor(file, key);
      const sub = /^string_to_param\.(.+)$/.exec(b[2]!);
      if (sub) data.string_to_param = { [sub[1]!]: t };
      else data[b[2]!] = t;
      bundled.set(b[1]!, data);
      continue;
    }
    const renamed = (opts.diffusersNames ?? true) ? diffusersToKohya(key, table.isSdxl) : undefined;
    const split = renamed ?? splitA1111(key);
    const match = renamed ? matchDiffusersModule(split.module, table) : matchModuleName(split.module, table);
    if (!match.layer) {
      unmatched.set(key, match.key);
      continue;
    }
    matchedKeys++;
    let g = groups.get(match.key);
    if (!g) {
      g = { networkKey: key, sdKey: match.key, layer: match.layer, w: new Map() };
      groups.set(match.key, g);
    }
    let t: F32Tensor;
    try {
      const info = file.info(key)!;
      t = { shape: [...info.shape], data: await file.readFloat32(key) };
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${file.path}: cannot read tensor ${key}: ${(e as Error).message}`);
    }
    for (const v of t.data) {
      if (!Number.isFinite(v))
        throw new UserError(`${file.path}: tensor ${key} holds NaN or infinite values`);
    }
    g.w.set(split.part, t);
  }
  const modules = new Map<string, NetworkModule>();
  for (const [sdKey, g] of groups) modules.set(sdKey, createModule(g, file.path));
  return {
    name,
    path: file.path,
    metadata: { ...file.metadata },
    modules,
    unmatched,
    matchedKeys,
    bundled,
  };
}

/** Layers a patched network can change on their own: those whose forward A1111 hooks (Linear, Conv2d, norms). */
function applicable(m: NetworkModule): boolean {
  // q/k/v parts of an OpenCLIP MultiheadAttention (sdKey `…_q_proj`) and its out_proj only change
  // weights as one q+k+v+out set (mhaSet); a module on the MHA itself has no `weight` to patch.
  if (m.sdKey !== m.layer.name || m.layer.mhaParent || m.layer.mhaOut) return false;
  return (
    m.layer.weightKey !== undefined && ['Linear', 'Conv2d', 'LayerNorm', 'GroupNorm'].includes(m.layer.type)
  );
}

/** One network's change to one unit: a layer, or a MultiheadAttention with its out_proj. */
type Step =
  | { a: ActiveNetwork; kind: 'layer'; m: NetworkModule }
  | {
      a: ActiveNetwork;
      kind: 'mha';
      name: string;
      qkv: [NetworkModule, NetworkModule, NetworkModule];
      out: NetworkModule;
    };

/**
 * What each network does to each unit, keyed by the unit's first weight (A1111's
 * `network_apply_weights`): plain modules on their layer; on a MultiheadAttention
 * (`in_proj_weight`), q/k/v/out only when all four are there (a partial set is skipped silently,
 * as A1111 does). A module matched to the MHA itself ("couldn't find supported operation") and
 * nothing else counts one error, as in A1111.
 */
function planSteps(active: readonly ActiveNetwork[]): {
  units: Map<string, { keys: string[]; steps: Step[] }>;
  planErrors: { a: ActiveNetwork; detail: string }[];
} {
  const units = new Map<string, { keys: string[]; steps: Step[] }>();
  const planErrors: { a: ActiveNetwork; detail: string }[] = [];
  const add = (keys: string[], step: Step) => {
    let u = units.get(keys[0]!);
    if (!u) units.set(keys[0]!, (u = { keys, steps: [] }));
    u.steps.push(step);
  };
  for (const a of active) {
    const mods = a.network.modules;
    const mhaNames = new Set<string>();
    for (const m of mods.values()) {
      if (applicable(m)) add([m.layer.weightKey!], { a, kind: 'layer', m });
      else if (m.layer.mhaOut) mhaNames.add(m.layer.name);
    }
    for (const name of mhaNames) {
      const q = mods.get(`${name}_q_proj`);
      const k = mods.get(`${name}_k_proj`);
      const v = mods.get(`${name}_v_proj`);
      const out = mods.get(`${name}_out_proj`);
      const self = mods.get(name);
      if (q && k && v && out && q.layer.name === name && k.layer.name === name && v.layer.name === name) {
        add([q.layer.weightKey!, out.layer.weightKey!], { a, kind: 'mha', name, qkv: [q, k, v], out });
      } else if (self) {
        planErrors.push({ a, detail: `layer ${name}: no supported operation for a MultiheadAttention` });
      }
    }
  }
  return { units, planErrors };
}

export interface ApplyResult {
  /** Checkpoint weight key → patched float32 weight, for every weight at least one network changed. */
  patched: Map<string, F32Tensor>;
  /** Network name → number of layers that failed to apply (A1111's `Networks with errors`). */
  errors: Map<string, number>;
  /** One line per failed layer, for logs. */
  details: string[];
}

/** The checkpoint weights the given networks touch, in checkpoint key order. */
export function touchedWeights(active: readonly ActiveNetwork[]): string[] {
  const keys = new Set<string>();
  for (const u of planSteps(active).units.values()) for (const k of u.keys) keys.add(k);
  return [...keys].sort();
}

/** torch.vstack of 2-D (or more) updowns: rows concatenated, the other dims must agree. */
function vstack(parts: F32Tensor[]): F32Tensor {
  const rest = parts[0]!.shape.slice(1);
  for (const p of parts)
    if (p.shape.length !== rest.length + 1 || p.shape.slice(1).some((d, i) => d !== rest[i]))
      throw new ApplyError(
        `cannot stack q/k/v deltas of shapes ${parts.map((x) => `[${x.shape}]`).join(', ')}`,
      );
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { shape: [parts.reduce((n, p) => n + p.shape[0]!, 0), ...rest], data };
}

/**
 * Patch the weights as A1111 does on a layer's first forward: start from the original weight,
 * then for each network in prompt order add `calc_updown(current weight)`. A layer that fails
 * (shapes that do not fit) keeps what it had and counts one error for that network.
 */
export async function applyNetworks(
  readWeight: (key: string) => Promise<F32Tensor>,
  active: readonly ActiveNetwork[],
): Promise<ApplyResult> {
  const { units, planErrors } = planSteps(active);
  const patched = new Map<string, F32Tensor>();
  const errors = new Map<string, number>();
  const details: string[] = [];
  const fail = (a: ActiveNetwork, detail: string) => {
    errors.set(a.network.name, (errors.get(a.network.name) ?? 0) + 1);
    details.push(`${a.network.name}: ${detail}`);
  };
  for (const e of planErrors) fail(e.a, e.detail);
  for (const key of [...units.keys()].sort()) {
    const { keys, steps } = units.get(key)!;
    // Networks keep their prompt order on each layer.
    steps.sort((x, y) => active.indexOf(x.a) - active.indexOf(y.a));
    const current = new Map<string, F32Tensor>();
    for (const k of keys) current.set(k, await readWeight(k));
    const changed = new Set<string>();
    for (const st of steps) {
      const { a } = st;
      const mult = (m: NetworkModule) => (multiplierKind(m.sdKey) === 'te' ? a.te : a.unet);
      try {
        if (st.kind === 'layer') {
          const w = current.get(key)!;
          current.set(
            key,
            (await patchFast(st.m, w, mult(st.m), a.dynDim)) ??
              addUpdown(w, await computeUpdown(st.m, w, mult(st.m), a.dynDim)),
          );
          changed.add(key);
        } else {
          // in_proj_weight += vstack(q, k, v deltas); out_proj.weight += out delta (both or neither).
          const [inKey, outKey] = keys as [string, string];
          const inW = current.get(inKey)!;
          const outW = current.get(outKey)!;
          const qkv: F32Tensor[] = [];
          for (const m of st.qkv) qkv.push(await computeUpdown(m, inW, mult(m), a.dynDim));
          const newIn = addUpdown(inW, vstack(qkv));
          const newOut = addUpdown(outW, await computeUpdown(st.out, outW, mult(st.out), a.dynDim));
          current.set(inKey, newIn);
          current.set(outKey, newOut);
          changed.add(inKey).add(outKey);
        }
      } catch (e) {
        if (!(e instanceof ApplyError)) throw e;
        fail(a, `layer ${st.kind === 'layer' ? st.m.sdKey : st.name}: ${e.message}`);
      }
    }
    for (const k of changed) patched.set(k, current.get(k)!);
  }
  return { patched, errors, details };
}

/**
 * The common case — a plain LoRA (no CP mid, no bias, no dyn_dim) whose product has the layer's
 * element count — as one onnxruntime call computing `W + ((up @ down) · scale) · multiplier`
 * (A1111's float32 operation order). Undefined when the general path must decide (errors,
 * broadcasting, inpainting padding) or the product is small.
 */
async function patchFast(
  m: NetworkModule,
  current: F32Tensor,
  multiplier: number,
  dynDim: number | null,
): Promise<F32Tensor | undefined> {
  if (m.moduleClass !== 'NetworkModuleLora' || m.w['lora_mid.weight'] || m.w['bias'] || dynDim !== null)
    return undefined;
  const up = m.w['lora_up.weight']!;
  const down = m.w['lora_down.weight']!;
  const o = up.shape[0]!;
  const r = up.data.length / o;
  const i = down.data.length / (down.shape[0] ?? 1);
  if (down.shape[0] !== r || o * i !== current.data.length || current.shape[0] !== o) return undefined;
  if (current.shape.length === 4 && current.shape[1] === 9) return undefined; // inpainting: padded path
  if (o * r * i < matmulOptions.minMacsForOrt) return undefined;
  const data = await patchLowRankOrt(current.data, up.data, down.data, o, r, i, calcScale(m), multiplier);
  return { shape: [...current.shape], data };
}

/** A1111's infotext comment for failed layers: `Networks with errors: name (N), …`. */
export function networkErrorsComment(errors: ReadonlyMap<string, number>): string | undefined {
  if (errors.size === 0) return undefined;
  return 'Networks with errors: ' + [...errors].map(([k, v]) => `${k} (${v})`).join(', ');
}
