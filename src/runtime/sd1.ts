/**
 * The engine's front: an SD 1.x checkpoint as three runnable networks. Sessions are created
 * lazily (the first call of each part builds its graph and opens its session) and kept until
 * `release()`. All tensors are float32 NCHW / [B, T, W] with explicit dims.
 */
import { createHash } from 'node:crypto';
import type ort from 'onnxruntime-node';
import type { DiffusionModel, TextConditioning } from './diffusion-model.js';
import { openModel } from '../formats/open.js';
import type { TensorSource } from '../formats/tensor.js';
import { LORA_DOWN, LORA_UP, type GraphBuilder, type GraphOptions } from '../onnx/builder.js';
import type { AttentionImpl } from '../onnx/ops.js';
import {
  buildClipTextEncoderGraph,
  buildClipTokenEmbeddingGraph,
  clipHiddenName,
  clipNormedName,
  CLIP_IO,
} from '../models/clip-text.js';
import type { DiffusionConfig, ModelFamily, PredictionType, Sd1Config, TextTower } from '../models/config.js';
import { diffusionConfigFromSd1, diffusionConfigFromSource } from '../models/family.js';
import { sidecarPathFor } from '../models/detect-sidecar.js';
import { buildOpenClipTextEncoderGraph, buildOpenClipTokenEmbeddingGraph } from '../models/openclip-text.js';
import {
  buildTimestepEmbeddingGraph,
  buildUNetGraph,
  UNET_IO,
  type UNetBuildOptions,
  type UNetPrecision,
} from '../models/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph, VAE_IO } from '../models/vae.js';
import { MAX_TOKEN_MERGE_RATIO, TOKEN_MERGE_IO, tokenMergeInputs } from '../models/token-merging.js';
import {
  HypernetWeightSource,
  hypernetMultiplierInput,
  hypernetTensors,
} from '../models/hypernetwork-graph.js';
import { UserError } from '../util/errors.js';
import { ensureProvider } from './provider-check.js';
import { createSession, f32, i64, type SessionOptions } from './session.js';
import { cropBorder, decodeTiled, encodeTiled, seamlessMargin, wrapPad, type TileOptions } from './tiling.js';
import { numel } from '../formats/tensor.js';
import { createOptimizedSession, graphFingerprint } from './optimized-cache.js';
import { Int8WeightSource, int8WeightLimit } from './quantize.js';
import {
  aboutDuration,
  formatGb,
  prepareModel,
  paramBytes,
  removeEntry,
  sourceIdentity,
  type PreparedModel,
  type WeightsCacheOptions,
} from './weights.js';

import type { LowRankBranch, LowRankBranches, TensorF32, UNetInputs, VaePosterior } from './tensors.js';

export type { TensorF32, UNetInputs, VaePosterior } from './tensors.js';

/**
 * onnxruntime's level-'all' optimisation and save, weight bytes per second on the 2-core development
 * VM (SD 1.5's 3.4 GB UNet ≈ 35 s; docs/performance.md), for the notice's estimate.
 */
const OPTIMIZE_BYTES_PER_S = 100e6;

/** Graphs with at least this many weight bytes keep their level-'all' optimisation in the cache. */
const SAVE_OPTIMIZED_MIN_BYTES = 256 * 1024 ** 2;

/** The networks of a checkpoint, as far as their sessions' settings go. */
export type Sd1Part = 'text' | 'unet' | 'vae';

/**
 * Session settings per network where the best choice differs (docs/performance.md, measured on
 * SD 1.5 at 512²). The VAE is 91 % convolutions: level 'all' runs them in MLAS's NCHWc kernels
 * (≈ 20 % less CPU per decode) and without the memory-pattern planner it peaks 0.6 GB lower and
 * pays one slow first run instead of two. The UNet at 'all' runs its convolutions the same way
 * (512² step 6.06 → ≈ 5.0 s), but onnxruntime needs ≈ 35 s to optimise it: Sd1Model saves the
 * optimised UNet once per checkpoint (sessionAtLevelAll). Without the memory-pattern planner the
 * UNet keeps ≈ 150 MB less in its arena between steps (a 512² txt2img peaks 5712 instead of
 * 5866 MB) at the same step time.
 */
export const PART_SESSION_DEFAULTS: Readonly<Record<Sd1Part, Readonly<SessionOptions>>> = {
  text: {},
  unet: { optLevel: 'all', memPattern: false },
  vae: { optLevel: 'all', memPattern: false },
};

export interface Sd1LoadOptions extends SessionOptions, WeightsCacheOptions {
  /** The ldm/sgm `<checkpoint>.yaml` to read (default: the one next to the file, as A1111). */
  yamlPath?: string;
  /**
   * Session options for one network (VAE = decoder and encoder). Precedence: these, then the
   * top-level session options that are set (they apply to every part), then PART_SESSION_DEFAULTS.
   */
  partSessions?: Partial<Record<Sd1Part, SessionOptions>>;
  /**
   * Hyper-parameters; default: read through models/detect (`diffusionConfigFromSource`, with the
   * `<checkpoint>.yaml` sidecar when there is one). An Sd1Config is taken as SD 1.x (or SD 2.x when
   * the file has open_clip text keys).
   */
  config?: Sd1Config | DiffusionConfig;
  /** `--prediction v|eps`: what the UNet predicts, overriding the file and its sidecar. */
  prediction?: PredictionType;
  /** Attention kernel for UNet/VAE (default 'mha': onnxruntime's memory-efficient contrib op). */
  attention?: AttentionImpl;
  /** Use com.microsoft contrib ops (default: on the CPU and CUDA providers, which implement them). */
  contribOps?: boolean;
  /**
   * Graph forms tuned for onnxruntime's CPU kernels (GraphOptions.cpuForms; default: on the CPU
   * provider only). Off on the CPU gives the graph GPU providers get, to check it without a GPU.
   */
  cpuForms?: boolean;
  /**
   * Query chunk size of plain attention in the UNet (the form used without contrib ops: webgpu,
   * dml, coreml); more queries than this are attended in chunks. Default DEFAULT_ATTENTION_CHUNK
   * (1024); 0 = never chunk.
   */
  attentionChunk?: number;
  /**
   * Top UNet levels whose ResBlock convolutions run as Winograd F(2×2, 3×3) on the CPU provider
   * (UNetBuildOptions.winogradLevels; default 2; 0 = direct convolutions only).
   */
  winogradLevels?: number;
  /** Build UNet/VAE graphs that also output every block (names = checkpoint key prefixes). */
  debug?: boolean;
  /**
   * UNet arithmetic: 'fp32' (default, the reference), or 'int8' — the opt-in fast path
   * (convolutions and transformer linears in int8 on onnxruntime's CPU provider; weights quantized
   * once per checkpoint into the weights cache). 'nhwc' is the int8 graph's layout in float32.
   * 'fp16': UNet and text encoder in float16 (weights kept float16: referenced in place in an fp16
   * checkpoint, else converted once into the weights cache) — what GPU providers run, as A1111
   * does by default. The VAE stays float32 (A1111's --no-half-vae: SD 1.x's VAE overflows float16
   * at large sizes). Inputs and outputs stay float32.
   */
  unetPrecision?: UNetPrecision;
  /**
   * LoRA layers of the UNet as low-rank branches fed to its graph (adapters/lora-branches.ts):
   * the UNet's weights stay the checkpoint's, the graph gets one branch per layer named here.
   */
  lowRankBranches?: LowRankBranches;
  /** Told about slow one-time work as it starts (e.g. optimising a new checkpoint's UNet). */
  onNotice?: (message: string) => void;
}

/**
 * Check a tensor's dims against a pattern (null = any positive size) and its data length, so a
 * caller's mistake is a clear UserError rather than an onnxruntime failure deep in the graph.
 */
export function expectDims(what: string, t: TensorF32, pattern: (number | null)[]): number[] {
  const d = t.dims;
  const ok =
    d.length === pattern.length &&
    d.every((v, i) => Number.isInteger(v) && v > 0 && (pattern[i] === null || pattern[i] === v));
  if (!ok) {
    const want = pattern.map((p) => (p === null ? '*' : String(p))).join(', ');
    throw new UserError(`${what}: expected dims [${want}], got [${d.join(', ')}]`);
  }
  const n = d.reduce((a, v) => a * v, 1);
  if (t.data.length !== n)
    throw new UserError(`${what}: dims [${d.join(', ')}] need ${n} values, got ${t.data.length}`);
  return d;
}

/** Graph versions: part of the weights-cache key and of the session cache key. */
const GRAPH_VERSION = { text: 'clip-1', unet: 'unet-1', vae: 'vae-1' };
/** Bump when runtime/quantize.ts changes what `#q8` tensors hold. */
const INT8_WEIGHTS_VERSION = 'q8-1';

/** Sessions and cleanup shared by a model and its tiling views. */
interface Sd1State {
  sessions: Map<string, Promise<ort.InferenceSession>>;
  released: boolean;
  /** Cache entries of in-memory sources, removed on release. */
  ephemeralEntries: string[];
}

export class Sd1Model implements DiffusionModel {
  private readonly state: Sd1State;
  /** Contrib ops only where onnxruntime implements them (CPU, CUDA); CPU-tuned forms on the CPU only. */
  private readonly graphOpts: GraphOptions;

  constructor(
    readonly source: TensorSource,
    readonly config: DiffusionConfig,
    private readonly opts: Sd1LoadOptions,
    private readonly ownsSource: boolean,
    /** Seamless tiling (A1111 "Tiling"): UNet and VAE convolutions wrap around the edges. */
    readonly tiling = false,
    shared?: Sd1State,
  ) {
    const provider = opts.provider ?? 'cpu';
    this.graphOpts = {
      contribOps: opts.contribOps ?? (provider === 'cpu' || provider === 'cuda'),
      cpuForms: opts.cpuForms ?? provider === 'cpu',
      // The text encoder follows the UNet into float16; the VAE stays float32 (see unetPrecision).
      float16: opts.unetPrecision === 'fp16',
    };
    this.state = shared ?? { sessions: new Map(), released: false, ephemeralEntries: [] };
    // Every branch must belong to a graph that takes branches (the UNet, a CLIP text tower).
    const owners = [
      config.prefixes.unet,
      ...config.towers.filter((t) => t.layout !== 'open-clip').map((t) => t.prefix),
    ];
    for (const k of opts.lowRankBranches?.keys() ?? []) {
      if (!owners.some((p) => k.startsWith(`${p}.`)))
        throw new Error(`low-rank branch ${k} belongs to no UNet or CLIP text encoder of this model`);
    }
  }

  /**
   * This model with seamless tiling on or off: a view sharing the checkpoint and every session
   * (tiled graphs get sessions of their own, opened on first use); releasing either releases both.
   */
  withTiling(on: boolean): Sd1Model {
    if (on === this.tiling) return this;
    return new Sd1Model(this.source, this.config, this.opts, this.ownsSource, on, this.state);
  }

  /** The session options for one part (see Sd1LoadOptions.partSessions for the precedence). */
  sessionOptions(part: Sd1Part): SessionOptions {
    // The int8 UNet has no float convolutions left for level 'all' to improve, and its activations
    // are small (1.4 GB peak): without the memory-pattern planner its second run is already at full
    // speed (2.7 s vs 3.0 s with the planner's extra allocation).
    const int8: SessionOptions =
      part === 'unet' && this.opts.unetPrecision === 'int8'
        ? { optLevel: 'extended', memPattern: false }
        : {};
    return {
      ...PART_SESSION_DEFAULTS[part],
      ...int8,
      ...definedFields({ ...this.opts, lowRankBranches: undefined }),
      ...definedFields(this.opts.partSessions?.[part] ?? {}),
    };
  }

  private session(
    part: Sd1Part,
    key: string,
    version: string,
    build: () => GraphBuilder,
  ): Promise<ort.InferenceSession> {
    const { sessions } = this.state;
    if (this.state.released) throw new Error('this model has been released');
    let s = sessions.get(key);
    if (!s) {
      s = (async () => {
        const options = this.sessionOptions(part);
        // A GPU provider that cannot start is said before any weights are prepared for it.
        if (options.provider && options.provider !== 'cpu') await ensureProvider(options.provider);
        const g = build();
        if (options.optLevel === 'all' && (options.provider ?? 'cpu') === 'cpu') {
          return this.sessionAtLevelAll(g, version, options, `${version}|${key}`);
        }
        return createSession(await this.prepare(g, version), options);
      })();
      sessions.set(key, s);
      s.catch(() => sessions.delete(key));
    }
    return s;
  }

  /** Place the graph's weights (runtime/weights.ts); ephemeral cache entries go on release(). */
  private async prepare(g: GraphBuilder, version: string): Promise<PreparedModel> {
    const prepared = await prepareModel(g, version, this.opts);
    if (prepared.ephemeral && prepared.cacheEntry) this.state.ephemeralEntries.push(prepared.cacheEntry);
    return prepared;
  }

  /**
   * A CPU session at level 'all'. A large graph (a real checkpoint's UNet) is optimised once and
   * saved in the weights cache (runtime/optimized-cache.ts: ≈ 35 s once, then ≈ 4 s per load);
   * weights that cannot be recognised again (in memory, patched) get level 'extended' instead,
   * since optimising them anew at every load would cost more than it saves. Small graphs are
   * optimised directly.
   */
  private async sessionAtLevelAll(
    g: GraphBuilder,
    version: string,
    options: SessionOptions,
    graphKey: string,
  ): Promise<ort.InferenceSession> {
    const params = [...g.params.values()];
    const bytes = params.reduce((n, p) => n + numel(p.shape) * paramBytes(p), 0);
    if (bytes < SAVE_OPTIMIZED_MIN_BYTES) return createSession(await this.prepare(g, version), options);
    const identity = await sourceIdentity(
      g.source,
      params.map((p) => p.key),
    );
    if (!identity) {
      return createSession(await this.prepare(g, version), { ...options, optLevel: 'extended' });
    }
    // The weights are only placed (an fp16 checkpoint converted) when the optimised model is not
    // saved yet: a saved one carries its own.
    const key = JSON.stringify([graphKey, graphFingerprint(g), options.freeDimOverrides ?? null]);
    const r = await createOptimizedSession(
      () => this.prepare(g, version),
      identity,
      key,
      options,
      this.opts,
      () =>
        this.opts.onNotice?.(
          `optimising the ${g.graphName} (${formatGb(bytes)} of weights) for this CPU once per checkpoint, ` +
            `about ${aboutDuration(bytes / OPTIMIZE_BYTES_PER_S)} (saved in the weights cache)`,
        ),
    );
    return r.session;
  }

  private async run(
    session: Promise<ort.InferenceSession>,
    feeds: Record<string, ort.Tensor>,
    outputs: string[],
  ): Promise<Record<string, TensorF32>> {
    const sess = await session;
    const unknown = outputs.filter((o) => !sess.outputNames.includes(o));
    if (unknown.length > 0) {
      throw new Error(
        `no output ${unknown.map((u) => `"${u}"`).join(', ')} in this graph` +
          (this.opts.debug ? '' : ' (block outputs need loadSd1(…, {debug: true}))'),
      );
    }
    const res = await sess.run(feeds, outputs);
    const out: Record<string, TensorF32> = {};
    for (const name of outputs)
      out[name] = { data: res[name]!.data as Float32Array, dims: [...res[name]!.dims] };
    return out;
  }

  // ---- model facts (DiffusionModel) ----

  get family(): ModelFamily {
    return this.config.family;
  }
  get prediction(): PredictionType {
    return this.config.prediction;
  }
  get scaleFactor(): number {
    return this.config.scaleFactor;
  }
  get latentChannels(): number {
    return this.config.unet.outChannels;
  }
  get towers(): readonly TextTower[] {
    return this.config.towers;
  }

  // ---- text encoders ----

  private tower(i: number): TextTower {
    const t = this.config.towers[i];
    if (!t) throw new Error(`this model has ${this.config.towers.length} text encoder(s), not ${i + 1}`);
    return t;
  }

  private checkIds(ids: Int32Array | BigInt64Array, batch: number, tower = 0): BigInt64Array {
    const cfg = this.tower(tower).config;
    const T = cfg.maxPositions;
    if (ids.length !== batch * T) {
      throw new UserError(`token ids: expected ${batch}×${T} = ${batch * T} ids, got ${ids.length}`);
    }
    const out = ids instanceof BigInt64Array ? ids : BigInt64Array.from(ids, (v) => BigInt(v));
    const vocab = BigInt(cfg.vocabSize);
    for (const v of out) {
      if (v < 0n || v >= vocab)
        throw new UserError(`token id ${v} is outside the vocabulary (0..${vocab - 1n})`);
    }
    return out;
  }

  /** Session key suffix of a tower (tower 0 keeps the historical keys). */
  private towerKey(tower: number): string {
    return tower === 0 ? '' : `.${tower}`;
  }

  private textEmbedSession(tower: number) {
    const t = this.tower(tower);
    return this.session('text', `clip-embed${this.towerKey(tower)}`, GRAPH_VERSION.text, () =>
      t.layout === 'open-clip'
        ? buildOpenClipTokenEmbeddingGraph(this.source, t.config, t.prefix, this.graphOpts)
        : buildClipTokenEmbeddingGraph(this.source, t.config, t.prefix, this.graphOpts),
    );
  }

  /** The low-rank branches of the graph whose keys start with `prefix` (Sd1LoadOptions.lowRankBranches). */
  private branchesOf(prefix: string): [string, LowRankBranch][] {
    return [...(this.opts.lowRankBranches ?? [])].filter(([k]) => k.startsWith(`${prefix}.`));
  }

  private textEncoderSession(tower: number) {
    const t = this.tower(tower);
    const branches = this.branchesOf(t.prefix).map(([k]) => k);
    const branchKey = branches.length ? `|lora:${layerSetHash(branches)}` : '';
    return this.session('text', `clip-encoder${this.towerKey(tower)}${branchKey}`, GRAPH_VERSION.text, () => {
      if (t.layout === 'open-clip')
        return buildOpenClipTextEncoderGraph(this.source, t.config, t.prefix, this.graphOpts);
      const g = buildClipTextEncoderGraph(this.source, t.config, t.prefix, {
        ...this.graphOpts,
        lowRankBranches: new Set(branches),
      });
      const missing = g.missingBranches();
      if (missing.length)
        throw new Error(`text encoder: no Linear layer ${missing.join(', ')} for a low-rank branch`);
      return g;
    });
  }

  /**
   * Token ids [batch, 77] → token embeddings [batch, 77, W] of text tower `tower` (splice
   * textual-inversion vectors here).
   */
  async tokenEmbeddings(ids: Int32Array | BigInt64Array, batch: number, tower = 0): Promise<TensorF32> {
    if (batch > MAX_TEXT_ROWS) {
      const T = this.tower(tower).config.maxPositions;
      const parts: TensorF32[] = [];
      for (let r = 0; r < batch; r += MAX_TEXT_ROWS) {
        const n = Math.min(MAX_TEXT_ROWS, batch - r);
        parts.push(await this.tokenEmbeddings(ids.slice(r * T, (r + n) * T), n, tower));
      }
      return concatRows(parts);
    }
    const r = await this.run(
      this.textEmbedSession(tower),
      {
        [CLIP_IO.ids]: i64(this.checkIds(ids, batch, tower), [batch, this.tower(tower).config.maxPositions]),
      },
      [CLIP_IO.embeds],
    );
    return r[CLIP_IO.embeds]!;
  }

  /** Names of a tower's outputs: `hidden_states.i` and `normed.i`, i = 0..layers. */
  textOutputNames(tower = 0): string[] {
    const names: string[] = [];
    for (let i = 0; i <= this.tower(tower).config.layers; i++)
      names.push(clipHiddenName(i), clipNormedName(i));
    return names;
  }

  /** Run a text transformer on token embeddings [B, 77, W] and return the named outputs. */
  async textOutputs(embeds: TensorF32, outputs: string[], tower = 0): Promise<Record<string, TensorF32>> {
    const t = this.tower(tower).config;
    expectDims('token embeddings', embeds, [null, t.maxPositions, t.width]);
    const batch = embeds.dims[0]!;
    if (batch > MAX_TEXT_ROWS) {
      const parts: Record<string, TensorF32>[] = [];
      for (let r = 0; r < batch; r += MAX_TEXT_ROWS) {
        parts.push(
          await this.textOutputs(sliceRows(embeds, r, Math.min(batch, r + MAX_TEXT_ROWS)), outputs, tower),
        );
      }
      return Object.fromEntries(outputs.map((o) => [o, concatRows(parts.map((p) => p[o]!))]));
    }
    const feeds: Record<string, ort.Tensor> = { [CLIP_IO.embeds]: f32(embeds.data, embeds.dims) };
    const tw = this.tower(tower);
    if (tw.layout !== 'open-clip') Object.assign(feeds, branchFeeds(this.branchesOf(tw.prefix)));
    return this.run(this.textEncoderSession(tower), feeds, outputs);
  }

  /**
   * The output a tower conditions on, with A1111's clip skip: SD 1.x clip skip N =
   * final_layer_norm(hidden_states[-N]); SD 2.x is always ln_final(penultimate) and SDXL always the
   * penultimate hidden states (A1111 applies no clip skip to open_clip towers, nor by default to
   * SDXL's CLIP-L). With A1111's `sdxl_clip_l_skip` on, SDXL's CLIP-L takes hidden_states[-N]
   * (no final norm: N = 1 is the last layer's output, 2 the default penultimate). clip skip must
   * still be 1 … layers.
   */
  private contextOutputName(tower: number, clipSkip: number, sdxlClipLSkip = false): string {
    const t = this.tower(tower);
    const L = t.config.layers;
    if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > L) {
      throw new UserError(`clip skip must be an integer from 1 to ${L}, got ${clipSkip}`);
    }
    if (t.layer === 'last-normed') return clipNormedName(L + 1 - clipSkip);
    if (t.layer === 'penultimate-normed') return clipNormedName(L - 1);
    if (sdxlClipLSkip && t.layout === 'hf-clip') return clipHiddenName(L + 1 - clipSkip);
    return clipHiddenName(L - 1);
  }

  /** A tower's conditioning from its token embeddings (see contextOutputName). */
  async encodeEmbeddings(embeds: TensorF32, clipSkip = 1, tower = 0): Promise<TensorF32> {
    const name = this.contextOutputName(tower, clipSkip);
    return (await this.textOutputs(embeds, [name], tower))[name]!;
  }

  async encodeIds(
    ids: Int32Array | BigInt64Array,
    batch: number,
    clipSkip = 1,
    tower = 0,
  ): Promise<TensorF32> {
    return this.encodeEmbeddings(await this.tokenEmbeddings(ids, batch, tower), clipSkip, tower);
  }

  private projections = new Map<number, Promise<Float32Array>>();

  /**
   * open_clip's pooled output: ln_final(last hidden state) at each row's EOS (the argmax of its ids,
   * as open_clip and sgm take it) times text_projection [W, P] → [B, P].
   */
  private async pooledOutput(tower: number, normedLast: TensorF32, ids: BigInt64Array): Promise<TensorF32> {
    const t = this.tower(tower);
    const P = t.pooledDim!;
    const W = t.config.width;
    const T = t.config.maxPositions;
    let proj = this.projections.get(tower);
    if (!proj) {
      proj = this.source.readFloat32(`${t.prefix}.text_projection`);
      this.projections.set(tower, proj);
    }
    const w = await proj;
    const batch = normedLast.dims[0]!;
    const out = new Float32Array(batch * P);
    for (let b = 0; b < batch; b++) {
      let at = 0;
      for (let i = 1; i < T; i++) if (ids[b * T + i]! > ids[b * T + at]!) at = i;
      const row = normedLast.data.subarray((b * T + at) * W, (b * T + at + 1) * W);
      for (let j = 0; j < P; j++) {
        let acc = 0;
        for (let k = 0; k < W; k++) acc += row[k]! * w[k * P + j]!;
        out[b * P + j] = acc;
      }
    }
    return { data: out, dims: [batch, P] };
  }

  /**
   * Text conditioning from every tower: `embeds[i]` are tower i's token embeddings [B, 77, W_i]
   * (textual inversion already spliced), `ids[i]` its ids (the pooled output needs the EOS
   * position). Returns the towers' contexts concatenated along channels [B, 77, Σ W_i] and, for
   * SDXL, the pooled output [B, P].
   */
  async encodeConditioning(
    embeds: readonly TensorF32[],
    ids: readonly (Int32Array | BigInt64Array)[],
    clipSkip = 1,
  ): Promise<TextConditioning> {
    const towers = this.config.towers;
    if (embeds.length !== towers.length || ids.length !== towers.length) {
      throw new Error(
        `this model has ${towers.length} text encoder(s): got ${embeds.length} embeddings, ${ids.length} id sets`,
      );
    }
    const parts: TensorF32[] = [];
    let pooled: TensorF32 | undefined;
    for (let i = 0; i < towers.length; i++) {
      const r = await this.encodeTower(embeds[i]!, ids[i]!, clipSkip, i);
      parts.push(r.context);
      pooled ??= r.pooled;
    }
    const context = parts.length === 1 ? parts[0]! : concatChannels(parts);
    return pooled ? { context, pooled } : { context };
  }

  /** One tower's conditioning (its context, and its pooled output where the family uses one). */
  async encodeTower(
    embeds: TensorF32,
    ids: Int32Array | BigInt64Array,
    clipSkip: number,
    tower: number,
    opts: { sdxlClipLSkip?: boolean } = {},
  ): Promise<TextConditioning> {
    const t = this.tower(tower);
    const name = this.contextOutputName(tower, clipSkip, opts.sdxlClipLSkip);
    if (t.pooledDim === undefined) return { context: (await this.textOutputs(embeds, [name], tower))[name]! };
    const last = clipNormedName(t.config.layers);
    const r = await this.textOutputs(embeds, [...new Set([name, last])], tower);
    const batch = embeds.dims[0]!;
    return {
      context: r[name]!,
      pooled: await this.pooledOutput(tower, r[last]!, this.checkIds(ids, batch, tower)),
    };
  }

  /** encodeConditioning from ids alone (no textual inversion). */
  async encodeIdsAll(
    ids: readonly (Int32Array | BigInt64Array)[],
    batch: number,
    clipSkip = 1,
  ): Promise<TextConditioning> {
    const embeds: TensorF32[] = [];
    for (let i = 0; i < ids.length; i++) embeds.push(await this.tokenEmbeddings(ids[i]!, batch, i));
    return this.encodeConditioning(embeds, ids, clipSkip);
  }

  // ---- UNet ----

  private unetSession(
    variant: Pick<
      UNetBuildOptions,
      | 'controlInputs'
      | 'separateKV'
      | 'debug'
      | 'matchSkipSizes'
      | 'sharedRows'
      | 'tokenMerging'
      | 'hypernetworks'
    >,
  ) {
    const flags = [
      variant.sharedRows && 's',
      variant.tokenMerging && 'tm',
      variant.controlInputs && 'c',
      variant.separateKV && 'kv',
      variant.debug && 'd',
      variant.matchSkipSizes && 'm',
      this.tiling && 't',
    ];
    const precision = this.opts.unetPrecision ?? 'fp32';
    if (precision === 'int8' && (this.opts.provider ?? 'cpu') !== 'cpu') {
      throw new UserError(
        `the int8 UNet runs on the CPU provider only; use --precision fp32 with ${this.opts.provider}`,
      );
    }
    const hn = variant.hypernetworks?.stack.length ? variant.hypernetworks : undefined;
    const branches = this.branchesOf(this.config.prefixes.unet).map(([k]) => k);
    // The graph depends on which layers carry a branch, not on the branches' values or ranks.
    const branchKey = branches.length ? `|lora:${layerSetHash(branches)}` : '';
    const key = `unet|${flags.filter(Boolean).join('')}|${precision}${branchKey}${hn ? `|hn=${hn.key}` : ''}`;
    // Hypernetwork sets are many and each variant holds a UNet: keep only the latest set's graphs.
    if (hn && !this.state.sessions.has(key))
      this.dropSessions((k) => k.includes('|hn=') && !k.endsWith(`|hn=${hn.key}`));
    const limit = int8WeightLimit();
    const version =
      precision === 'int8' || precision === 'nhwc'
        ? `${GRAPH_VERSION.unet}-${precision}-${INT8_WEIGHTS_VERSION}-${limit}`
        : GRAPH_VERSION.unet;
    // Built only when the session is (the hypernetworks' weights are copied into tensors).
    const sourceFor = () => {
      const base = hn ? new HypernetWeightSource(this.source, hypernetTensors(hn.stack)) : this.source;
      return precision === 'int8' ? new Int8WeightSource(base, limit) : base;
    };
    return this.session('unet', key, version, () =>
      buildUNetGraph(sourceFor(), this.config.unet, {
        ...variant,
        tiling: this.tiling,
        prefix: this.config.prefixes.unet,
        attention: this.opts.attention,
        contribOps: this.graphOpts.contribOps,
        cpuForms: this.graphOpts.cpuForms,
        attentionChunk: this.opts.attentionChunk,
        winogradLevels: this.opts.winogradLevels,
        precision,
        lowRankBranches: branches.length ? new Set(branches) : undefined,
      }),
    );
  }

  private unetFeeds(inp: UNetInputs): Record<string, ort.Tensor> {
    const u = this.config.unet;
    const [b] = expectDims('UNet x', inp.x, [null, u.inChannels, null, null]);
    expectDims('UNet timesteps', inp.t, [b!]);
    expectDims('UNet context', inp.context, [b!, null, u.contextDim]);
    if (inp.contextK) expectDims('UNet context_k', inp.contextK, [b!, inp.context.dims[1]!, u.contextDim]);
    if (inp.contextV) expectDims('UNet context_v', inp.contextV, [b!, inp.context.dims[1]!, u.contextDim]);
    const feeds: Record<string, ort.Tensor> = {
      [UNET_IO.x]: f32(inp.x.data, inp.x.dims),
      [UNET_IO.t]: f32(inp.t.data, inp.t.dims),
      [UNET_IO.context]: f32(inp.context.data, inp.context.dims),
    };
    if (u.admInChannels) {
      if (!inp.y) throw new UserError('this UNet (SDXL) needs its vector conditioning y');
      expectDims('UNet y', inp.y, [b!, u.admInChannels]);
      feeds[UNET_IO.y] = f32(inp.y.data, inp.y.dims);
    } else if (inp.y) {
      throw new UserError('this UNet takes no vector conditioning y (only SDXL models do)');
    }
    if (inp.control) {
      inp.control.skips.forEach((c, i) => (feeds[`control.${i}`] = f32(c.data, c.dims)));
      feeds['control.middle'] = f32(inp.control.middle.data, inp.control.middle.dims);
    }
    if (inp.contextK || inp.contextV) {
      const k = inp.contextK ?? inp.context;
      const v = inp.contextV ?? inp.context;
      feeds.context_k = f32(k.data, k.dims);
      feeds.context_v = f32(v.data, v.dims);
    }
    inp.hypernetworks?.stack.forEach(
      (n, i) => (feeds[hypernetMultiplierInput(i)] = f32(Float32Array.of(n.multiplier), [1])),
    );
    Object.assign(feeds, branchFeeds(this.branchesOf(this.config.prefixes.unet)));
    const ratio = inp.tokenMergeRatio ?? 0;
    if (!(ratio >= 0 && ratio <= MAX_TOKEN_MERGE_RATIO)) {
      throw new UserError(`token merging ratio must be within 0 … ${MAX_TOKEN_MERGE_RATIO} (got ${ratio})`);
    }
    // A latent one token high or wide has no 2×2 cell to merge into: no merging there.
    if (ratio > 0 && inp.x.dims[2]! > 1 && inp.x.dims[3]! > 1) {
      const m = tokenMergeInputs(inp.x.dims[2]!, inp.x.dims[3]!, ratio);
      feeds[TOKEN_MERGE_IO.src] = i64(m.src, [m.src.length]);
      feeds[TOKEN_MERGE_IO.dst] = i64(m.dst, [m.dst.length]);
      feeds[TOKEN_MERGE_IO.r] = i64(m.r, [1]);
    }
    return feeds;
  }

  /** eps = UNet(x, t, context[, extras]). */
  async unet(inp: UNetInputs): Promise<TensorF32> {
    return (await this.unetOutputs(inp, [UNET_IO.eps]))[UNET_IO.eps]!;
  }

  /** Named UNet outputs (`eps`, and with `debug` the block outputs named by key prefix). */
  async unetOutputs(inp: UNetInputs, outputs: string[]): Promise<Record<string, TensorF32>> {
    // Bounded runs: rows × context tokens per call at most MAX_UNET_CONTEXT_TOKENS (a long prompt
    // or many AND parts are run a few rows at a time; ordinary batches are never split).
    const batch = inp.x.dims[0]!;
    const perCall = Math.max(1, Math.floor(MAX_UNET_CONTEXT_TOKENS / inp.context.dims[1]!));
    if (batch > perCall) {
      const parts: Record<string, TensorF32>[] = [];
      for (let r = 0; r < batch; r += perCall) {
        const end = Math.min(batch, r + perCall);
        const rows = (t: TensorF32) => sliceRows(t, r, end);
        parts.push(
          await this.unetOutputs(
            {
              x: rows(inp.x),
              t: rows(inp.t),
              context: rows(inp.context),
              y: inp.y && rows(inp.y),
              contextK: inp.contextK && rows(inp.contextK),
              contextV: inp.contextV && rows(inp.contextV),
              hypernetworks: inp.hypernetworks,
              control: inp.control && {
                skips: inp.control.skips.map(rows),
                middle: rows(inp.control.middle),
              },
              tokenMergeRatio: inp.tokenMergeRatio,
            },
            outputs,
          ),
        );
      }
      return Object.fromEntries(outputs.map((o) => [o, concatRows(parts.map((p) => p[o]!))]));
    }
    const [, , h, w] = inp.x.dims;
    const factor = 2 ** (this.config.unet.channelMult.length - 1);
    const debug = !!this.opts.debug && outputs.some((o) => o !== UNET_IO.eps);
    const feeds = this.unetFeeds(inp);
    // CFG rows (an image's cond and uncond) share latent and timestep: computed once up to the
    // first cross-attention (UNetBuildOptions.sharedRows).
    const shared = debug ? undefined : sharedRows(inp.x, inp.t);
    if (shared && shared.distinct.length < inp.x.dims[0]!) {
      const n = inp.x.data.length / inp.x.dims[0]!;
      const x = new Float32Array(shared.distinct.length * n);
      shared.distinct.forEach((r, i) => x.set(inp.x.data.subarray(r * n, (r + 1) * n), i * n));
      feeds[UNET_IO.x] = f32(x, [shared.distinct.length, ...inp.x.dims.slice(1)]);
      feeds[UNET_IO.t] = f32(
        Float32Array.from(shared.distinct, (r) => inp.t.data[r]!),
        [shared.distinct.length],
      );
    }
    // One graph serves both: distinct rows map to themselves (a Gather of ≈ 30 MB at 512² b2).
    if (shared)
      feeds[UNET_IO.rows] = i64(
        BigInt64Array.from(shared.rows, (r) => BigInt(r)),
        [shared.rows.length],
      );
    const s = this.unetSession({
      controlInputs: !!inp.control,
      separateKV: !!(inp.contextK || inp.contextV),
      debug,
      // Only sizes that do not halve evenly at every level need the skip resizes.
      matchSkipSizes: h! % factor !== 0 || w! % factor !== 0,
      sharedRows: !debug,
      tokenMerging: TOKEN_MERGE_IO.r in feeds,
      hypernetworks: inp.hypernetworks,
    });
    return this.run(s, feeds, outputs);
  }

  /** ldm timestep_embedding and time_embed MLP for timesteps t [N]. */
  async timeEmbedding(t: TensorF32): Promise<{ embedding: TensorF32; timeEmbedOut: TensorF32 }> {
    const s = this.session('unet', 'time-embed', GRAPH_VERSION.unet, () =>
      buildTimestepEmbeddingGraph(this.source, this.config.unet, this.config.prefixes.unet, this.graphOpts),
    );
    const r = await this.run(s, { t: f32(t.data, t.dims) }, ['embedding', 'time_embed_out']);
    return { embedding: r.embedding!, timeEmbedOut: r.time_embed_out! };
  }

  // ---- VAE ----

  /** The VAE's configuration; a file without one (SDXL refiner) says so here. */
  private vaeConfig() {
    if (!this.config.vae) {
      throw new UserError(
        `${this.source.path} has no VAE (first_stage_model.*): decode with the base model's VAE or pass a VAE file`,
      );
    }
    return this.config.vae;
  }

  private vaeDecoderSession() {
    const key = `vae-dec${this.opts.debug ? '|d' : ''}${this.tiling ? '|t' : ''}`;
    return this.session('vae', key, GRAPH_VERSION.vae, () =>
      buildVaeDecoderGraph(this.source, this.vaeConfig(), {
        prefix: this.config.prefixes.vae,
        tiling: this.tiling,
        attention: this.opts.attention,
        contribOps: this.graphOpts.contribOps,
        cpuForms: this.graphOpts.cpuForms,
        debug: this.opts.debug,
      }),
    );
  }

  private vaeEncoderSession() {
    const key = `vae-enc${this.opts.debug ? '|d' : ''}${this.tiling ? '|t' : ''}`;
    return this.session('vae', key, GRAPH_VERSION.vae, () =>
      buildVaeEncoderGraph(this.source, this.vaeConfig(), {
        prefix: this.config.prefixes.vae,
        tiling: this.tiling,
        attention: this.opts.attention,
        contribOps: this.graphOpts.contribOps,
        cpuForms: this.graphOpts.cpuForms,
        debug: this.opts.debug,
      }),
    );
  }

  /** Named decoder outputs (`image`, and with `debug` every sub-module by key prefix). */
  async vaeDecodeOutputs(z: TensorF32, outputs: string[]): Promise<Record<string, TensorF32>> {
    expectDims('VAE latent', z, [null, this.vaeConfig().embedDim, null, null]);
    return this.run(this.vaeDecoderSession(), { [VAE_IO.decoder.z]: f32(z.data, z.dims) }, outputs);
  }

  /**
   * Latent z [B, 4, h, w] (already divided by the scale factor) → image [B, 3, 8h, 8w] in about
   * [-1, 1], not clamped. `tiled` decodes in overlapping tiles to bound memory on large images.
   */
  async vaeDecode(z: TensorF32, tiled?: boolean | TileOptions): Promise<TensorF32> {
    const whole = async (zt: TensorF32) =>
      (await this.vaeDecodeOutputs(zt, [VAE_IO.decoder.image]))[VAE_IO.decoder.image]!;
    if (!tiled) return whole(z);
    const opts = tiled === true ? {} : tiled;
    if (!this.tiling) return decodeTiled(z, whole, opts);
    // Seamless and tiled: decode the latent with a wrapped border (plain graph) and keep the middle,
    // so the edges see their opposite side as the circular convolutions would.
    const m = seamlessMargin(opts);
    const plain = this.withTiling(false);
    return cropBorder(await decodeTiled(wrapPad(z, m), (zt) => plain.vaeDecode(zt), opts), 8 * m);
  }

  /** Named encoder outputs (moments, mean, logvar, std, sample; debug sub-modules). */
  async vaeEncodeOutputs(image: TensorF32, noise: TensorF32 | undefined, outputs: string[]) {
    const vae = this.vaeConfig();
    const [b, , h, w] = expectDims('VAE image', image, [null, vae.inChannels, null, null]) as number[] as [
      number,
      number,
      number,
      number,
    ];
    if (noise) expectDims('VAE noise', noise, [b, vae.embedDim, h / 8, w / 8]);
    if (h % 8 !== 0 || w % 8 !== 0)
      throw new UserError(`image size ${w}×${h} must be a multiple of 8 to encode`);
    const nd = [b, vae.embedDim, h / 8, w / 8];
    const n = noise ?? { data: new Float32Array(nd.reduce((a, c) => a * c, 1)), dims: nd };
    return this.run(
      this.vaeEncoderSession(),
      { [VAE_IO.encoder.image]: f32(image.data, image.dims), [VAE_IO.encoder.noise]: f32(n.data, n.dims) },
      outputs,
    );
  }

  /** Image [B, 3, H, W] in [-1, 1] → posterior; `sample` uses `noise` (zeros when absent). */
  async vaeEncode(image: TensorF32, noise?: TensorF32, tiled?: boolean | TileOptions): Promise<VaePosterior> {
    const names = ['moments', 'mean', 'logvar', 'std', 'sample'] as const;
    const whole = async (img: TensorF32, nz: TensorF32 | undefined) => {
      const r = await this.vaeEncodeOutputs(img, nz, [...names]);
      return { moments: r.moments!, mean: r.mean!, logvar: r.logvar!, std: r.std!, sample: r.sample! };
    };
    if (!tiled) return whole(image, noise);
    const opts = tiled === true ? {} : tiled;
    if (!this.tiling) return encodeTiled(image, noise, whole, opts);
    // Seamless and tiled: as in vaeDecode, a wrapped border instead of circular convolutions.
    const m = seamlessMargin(opts);
    const plain = this.withTiling(false);
    const r = await encodeTiled(
      wrapPad(image, 8 * m),
      noise && wrapPad(noise, m),
      (img, nz) => plain.vaeEncode(img, nz),
      opts,
    );
    return {
      moments: cropBorder(r.moments, m),
      mean: cropBorder(r.mean, m),
      logvar: cropBorder(r.logvar, m),
      std: cropBorder(r.std, m),
      sample: cropBorder(r.sample, m),
    };
  }

  /**
   * Open the default sessions of the given parts now (building graphs, mapping weights) instead of
   * on first use, e.g. to load a checkpoint before the first job or to time session creation.
   */
  async open(
    parts: ('text' | 'unet' | 'vaeDecoder' | 'vaeEncoder')[],
    opts: { tokenMerging?: boolean } = {},
  ): Promise<void> {
    const pending: Promise<unknown>[] = [];
    for (const part of parts) {
      if (part === 'text') {
        this.config.towers.forEach((_, i) =>
          pending.push(this.textEmbedSession(i), this.textEncoderSession(i)),
        );
      } else if (part === 'unet') {
        pending.push(this.unetSession({ sharedRows: true, tokenMerging: !!opts.tokenMerging }));
      } else if (part === 'vaeDecoder') pending.push(this.vaeDecoderSession());
      else pending.push(this.vaeEncoderSession());
    }
    await Promise.all(pending);
  }

  /** Close the sessions whose keys match (they are opened again on their next use). */
  private dropSessions(match: (key: string) => boolean): void {
    for (const [k, s] of [...this.state.sessions]) {
      if (!match(k)) continue;
      this.state.sessions.delete(k);
      s.then((x) => x.release()).catch(() => undefined);
    }
  }

  /** Release every session (and the checkpoint, when this model opened it). */
  async release(): Promise<void> {
    if (this.state.released) return;
    this.state.released = true;
    const all = [...this.state.sessions.values()];
    this.state.sessions.clear();
    for (const s of all) {
      try {
        await (await s).release();
      } catch {
        // a session that failed to open has nothing to release
      }
    }
    for (const e of this.state.ephemeralEntries.splice(0)) await removeEntry(e);
    if (this.ownsSource) await this.source.close();
  }
}

/**
 * Batch rows whose latent and timestep are bit-identical to an earlier row's: `distinct` lists the
 * first row of each kind, `rows[i]` the index in `distinct` of row i (the identity when all differ).
 */
/** The graph inputs of low-rank branches (onnx/builder.ts `lowRankBranch`). */
function branchFeeds(branches: [string, LowRankBranch][]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [prefix, b] of branches) {
    feeds[`${LORA_DOWN}${prefix}`] = f32(b.down, [b.rank, b.inF]);
    feeds[`${LORA_UP}${prefix}`] = f32(b.up, [b.outF, b.rank]);
  }
  return feeds;
}

/** A short stable name for a set of layer names (session and saved-model keys). */
function layerSetHash(names: Iterable<string>): string {
  return createHash('sha256')
    .update([...names].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
}

export function sharedRows(x: TensorF32, t: TensorF32): { distinct: number[]; rows: number[] } {
  const b = x.dims[0]!;
  const n = x.data.length / b;
  const bits = new Uint32Array(x.data.buffer, x.data.byteOffset, x.data.length);
  const tBits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  const same = (i: number, j: number) => {
    if (tBits[i] !== tBits[j]) return false;
    for (let k = 0; k < n; k++) if (bits[i * n + k] !== bits[j * n + k]) return false;
    return true;
  };
  const distinct: number[] = [];
  const rows: number[] = [];
  for (let i = 0; i < b; i++) {
    let u = distinct.findIndex((j) => same(i, j));
    if (u < 0) u = distinct.push(i) - 1;
    rows.push(u);
  }
  return { distinct, rows };
}

/**
 * The largest batches one onnxruntime run gets: text encoder rows, and UNet rows × context tokens
 * (64 images' cond + uncond rows with 2-chunk prompts fit whole). Larger inputs are run in parts
 * and joined (a prompt of ≈ 100 chunks or thousands of AND rows overflowed a stack inside
 * onnxruntime when run as one).
 */
export const MAX_TEXT_ROWS = 32;
export const MAX_UNET_CONTEXT_TOKENS = 64 * 154;

/** Rows [from, to) of a tensor whose first dimension is the batch (a copy). */
function sliceRows(t: TensorF32, from: number, to: number): TensorF32 {
  const per = t.data.length / t.dims[0]!;
  return { data: t.data.slice(from * per, to * per), dims: [to - from, ...t.dims.slice(1)] };
}

/** Tensors joined along their first dimension. */
function concatRows(parts: TensorF32[]): TensorF32 {
  if (parts.length === 1) return parts[0]!;
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { data, dims: [parts.reduce((n, p) => n + p.dims[0]!, 0), ...parts[0]!.dims.slice(1)] };
}

/** The fields of `o` that are set, so spreading them does not override defaults with undefined. */
function definedFields<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Channel-wise concatenation of [B, T, W_i] tensors → [B, T, Σ W_i]. */
export function concatChannels(parts: readonly TensorF32[]): TensorF32 {
  const [b, t] = parts[0]!.dims as [number, number];
  const widths = parts.map((p) => p.dims[2]!);
  const total = widths.reduce((a, w) => a + w, 0);
  const out = new Float32Array(b * t * total);
  for (let r = 0; r < b * t; r++) {
    let at = r * total;
    parts.forEach((p, i) => {
      const w = widths[i]!;
      out.set(p.data.subarray(r * w, (r + 1) * w), at);
      at += w;
    });
  }
  return { data: out, dims: [b, t, total] };
}

/** The checkpoint's configuration through models/detect (or the caller's), and whether the prediction is known. */
function configFor(
  src: TensorSource,
  opts: Sd1LoadOptions,
): { config: DiffusionConfig; predictionUnknown: boolean } {
  if (opts.config) {
    const config = 'family' in opts.config ? { ...opts.config } : diffusionConfigFromSd1(src, opts.config);
    if (opts.prediction) config.prediction = opts.prediction;
    return { config, predictionUnknown: false };
  }
  const yamlPath = opts.yamlPath ?? sidecarPathFor(src.path);
  return diffusionConfigFromSource(src, { yamlPath, prediction: opts.prediction });
}

/**
 * Open a checkpoint of any family (path or TensorSource); sessions open lazily on first use. The
 * family, networks and prediction come from models/detect (and the `<checkpoint>.yaml` sidecar next
 * to the file). An SD 2.x file whose prediction nothing says (no sidecar, no `prediction` option:
 * 512-base and 768-v have the same keys) is decided as A1111 does: the UNet runs once on a
 * constant input and predicts v when its output's mean lies more than 1 below the input's.
 */
export async function loadSd1(source: string | TensorSource, opts: Sd1LoadOptions = {}): Promise<Sd1Model> {
  const owns = typeof source === 'string';
  const src = typeof source === 'string' ? await openModel(source) : source;
  try {
    const { config, predictionUnknown } = configFor(src, opts);
    const model = new Sd1Model(src, config, opts, owns);
    if (predictionUnknown && config.family === 'sd2' && config.unet.inChannels === 4) {
      config.prediction = (await probeVPrediction(model)) ? 'v' : 'eps';
      if (config.prediction === 'v') config.defaultSize = 768;
    }
    return model;
  } catch (e) {
    if (owns) await src.close();
    throw e;
  }
}

/** The family-neutral name of the loader (every family loads through the same model class). */
export const loadDiffusionModel = loadSd1;

/**
 * A1111's `is_using_v_parameterization_for_sd2`: x = 0.5 everywhere [1, 4, 8, 8], t = 999, a
 * context of two tokens of 0.5; v-prediction when mean(UNet(x) − x) < −1.
 */
export async function probeVPrediction(model: Sd1Model): Promise<boolean> {
  const u = model.config.unet;
  const x = { data: new Float32Array(4 * 8 * 8).fill(0.5), dims: [1, 4, 8, 8] };
  const out = await model.unet({
    x,
    t: { data: Float32Array.of(999), dims: [1] },
    context: { data: new Float32Array(2 * u.contextDim).fill(0.5), dims: [1, 2, u.contextDim] },
  });
  let sum = 0;
  for (let i = 0; i < out.data.length; i++) sum += out.data[i]! - 0.5;
  return sum / out.data.length < -1;
}
