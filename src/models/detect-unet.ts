/**
 * The ldm `UNetModel` hyper-parameters, read back from the shapes of its weights. Works on any key
 * prefix (`model.diffusion_model.` in checkpoints, `control_model.` in ControlNets, none in a
 * standalone UNet). Names follow the ldm yaml (`unet_config.params`) so a sidecar compares 1:1.
 */

export type ShapeOf = (name: string) => number[] | undefined;

export interface UnetConfig {
  in_channels: number;
  /** Absent for a ControlNet (it has no output blocks). */
  out_channels?: number;
  model_channels: number;
  channel_mult: number[];
  num_res_blocks: number;
  /** Downsampling factors (1, 2, 4, …) of the levels that have attention, largest first as ldm configs list them. */
  attention_resolutions: number[];
  /** One number when every attention level has the same depth, else the depth per level (0 = no attention). */
  transformer_depth: number | number[];
  transformer_depth_middle?: number;
  context_dim?: number;
  use_spatial_transformer: boolean;
  /** SD2 and SDXL use Linear proj_in/proj_out; SD1 uses 1x1 convs. */
  use_linear_in_transformer: boolean;
  /** Input width of SDXL's `label_emb` (2816 base, 2560 refiner). */
  adm_in_channels?: number;
  /** Heads rule: not stored in any weight, so it comes from the architecture or the sidecar. */
  num_heads?: number;
  num_head_channels?: number;
  /** ControlNet: channels of the hint image (`input_hint_block.0`). */
  hint_channels?: number;
}

/**
 * The distinct N such that `${prefix}N.` has a key, ascending. Bounded by the number of keys, so a
 * hostile name like `input_blocks.4000000000.x` cannot make a caller loop for ever.
 */
export function indicesUnder(keys: readonly string[], prefix: string): number[] {
  const found = new Set<number>();
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const dot = rest.indexOf('.');
    const text = dot < 0 ? rest : rest.slice(0, dot);
    const n = Number(text);
    if (/^\d+$/.test(text) && Number.isSafeInteger(n)) found.add(n);
  }
  return [...found].sort((a, b) => a - b);
}

/** How many numbered children `${prefix}N.` there are (layers, blocks): highest N + 1. Never loop to it. */
export function countIndexed(keys: readonly string[], prefix: string): number {
  const found = indicesUnder(keys, prefix);
  return found.length === 0 ? 0 : found[found.length - 1]! + 1;
}

/** The UNet config under `prefix`, or undefined when the keys are not an ldm UNet. */
export function detectUnet(
  keys: readonly string[],
  shapeOf: ShapeOf,
  prefix: string,
): UnetConfig | undefined {
  const conv0 = shapeOf(`${prefix}input_blocks.0.0.weight`);
  if (!conv0 || conv0.length !== 4) return undefined;
  const modelChannels = conv0[0]!;
  const inChannels = conv0[1]!;
  if (modelChannels <= 0) return undefined;

  // Walk input_blocks 1..N: ResBlocks (in_layers.2 = conv) and transformers, split into levels by
  // the Downsample blocks (`.0.op`).
  const blocks = indicesUnder(keys, `${prefix}input_blocks.`).filter((i) => i > 0);
  const levels: { channels: number; resBlocks: number; depths: number[] }[] = [];
  let current = { channels: modelChannels, resBlocks: 0, depths: [] as number[] };
  let linear = false;
  let contextDim: number | undefined;
  for (const i of blocks) {
    const p = `${prefix}input_blocks.${i}.`;
    if (shapeOf(`${p}0.op.weight`) || shapeOf(`${p}0.op.bias`)) {
      levels.push(current);
      current = { channels: current.channels, resBlocks: 0, depths: [] };
      continue;
    }
    const res = shapeOf(`${p}0.in_layers.2.weight`);
    if (!res) continue;
    current.channels = res[0]!;
    current.resBlocks += 1;
    const depth = countIndexed(keys, `${p}1.transformer_blocks.`);
    current.depths.push(depth);
    const projIn = shapeOf(`${p}1.proj_in.weight`);
    if (projIn) linear = projIn.length === 2;
    const toK = shapeOf(`${p}1.transformer_blocks.0.attn2.to_k.weight`);
    if (toK && contextDim === undefined) contextDim = toK[1];
  }
  levels.push(current);
  if (levels.length === 0 || levels[0]!.resBlocks === 0) return undefined;

  const numResBlocks = levels[0]!.resBlocks;
  const channelMult = levels.map((l) => l.channels / modelChannels);
  const levelDepth = levels.map((l) => Math.max(0, ...l.depths));
  const attention_resolutions = levelDepth
    .map((d, i) => (d > 0 ? 2 ** i : 0))
    .filter((r) => r > 0)
    .sort((a, b) => b - a);
  const attnDepths = levelDepth.filter((d) => d > 0);
  const uniform = attnDepths.length > 0 && attnDepths.every((d) => d === attnDepths[0]);

  const middleDepth = countIndexed(keys, `${prefix}middle_block.1.transformer_blocks.`);
  const midToK = shapeOf(`${prefix}middle_block.1.transformer_blocks.0.attn2.to_k.weight`);
  if (contextDim === undefined && midToK) contextDim = midToK[1];
  const midProj = shapeOf(`${prefix}middle_block.1.proj_in.weight`);
  if (midProj && attnDepths.length === 0) linear = midProj.length === 2;

  const cfg: UnetConfig = {
    in_channels: inChannels,
    model_channels: modelChannels,
    channel_mult: channelMult,
    num_res_blocks: numResBlocks,
    attention_resolutions,
    transformer_depth: uniform ? attnDepths[0]! : levelDepth,
    use_spatial_transformer: attnDepths.length > 0 || middleDepth > 0,
    use_linear_in_transformer: linear,
  };
  const out = shapeOf(`${prefix}out.2.weight`);
  if (out) cfg.out_channels = out[0]!;
  if (middleDepth > 0 && !(uniform && middleDepth === attnDepths[0]))
    cfg.transformer_depth_middle = middleDepth;
  if (contextDim !== undefined) cfg.context_dim = contextDim;
  const adm = shapeOf(`${prefix}label_emb.0.0.weight`);
  if (adm) cfg.adm_in_channels = adm[1]!;
  const hint = shapeOf(`${prefix}input_hint_block.0.weight`);
  if (hint) cfg.hint_channels = hint[1]!;
  return cfg;
}
