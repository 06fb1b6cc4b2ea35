/**
 * The ldm `AutoencoderKL` hyper-parameters from weight shapes. Names follow the ldm yaml
 * (`first_stage_config.params` + its `ddconfig`).
 */
import { countIndexed, indicesUnder, type ShapeOf } from './detect-unet.js';

export interface VaeConfig {
  embed_dim: number;
  double_z: boolean;
  z_channels: number;
  in_channels: number;
  out_ch: number;
  ch: number;
  ch_mult: number[];
  num_res_blocks: number;
  /**
   * Resolutions with attention in the down/up levels, computed as ldm does for `resolution: 256`
   * (the value every SD config uses; the weights do not store it). The mid-block attention always exists.
   */
  attn_resolutions: number[];
}

/** The VAE config under `prefix` (`first_stage_model.` or none), or undefined when absent. */
export function detectVae(keys: readonly string[], shapeOf: ShapeOf, prefix: string): VaeConfig | undefined {
  const convIn = shapeOf(`${prefix}encoder.conv_in.weight`);
  const decIn = shapeOf(`${prefix}decoder.conv_in.weight`);
  const encOut = shapeOf(`${prefix}encoder.conv_out.weight`);
  const decOut = shapeOf(`${prefix}decoder.conv_out.weight`);
  if (!convIn || !decIn || !encOut || !decOut || convIn.length !== 4) return undefined;
  const ch = convIn[0]!;
  const levels = indicesUnder(keys, `${prefix}encoder.down.`);
  if (levels.length === 0 || ch <= 0) return undefined;
  const chMult: number[] = [];
  const attn: number[] = [];
  for (const i of levels) {
    const c = shapeOf(`${prefix}encoder.down.${i}.block.0.conv2.weight`);
    chMult.push(c ? c[0]! / ch : NaN);
    if (keys.some((k) => k.startsWith(`${prefix}encoder.down.${i}.attn.`))) attn.push(256 / 2 ** i);
  }
  const zChannels = decIn[1]!;
  const quant = shapeOf(`${prefix}post_quant_conv.weight`);
  return {
    embed_dim: quant ? quant[1]! : zChannels,
    double_z: encOut[0] === 2 * zChannels,
    z_channels: zChannels,
    in_channels: convIn[1]!,
    out_ch: decOut[0]!,
    ch,
    ch_mult: chMult,
    num_res_blocks: countIndexed(keys, `${prefix}encoder.down.0.block.`),
    attn_resolutions: attn,
  };
}
