/**
 * TAESD, the tiny autoencoder for Stable Diffusion latents (madebyollin/taesd), decoder only: a
 * cheap latent → RGB network used for live previews (A1111 "TAESD" preview type). The upstream
 * decoder is one nn.Sequential, so its checkpoint keys are the layer indices:
 *
 *   0 Clamp  1 conv(C→64)  2 ReLU  3–5 Block  6 Upsample  7 conv (no bias)
 *   8–10 Block  11 Upsample  12 conv  13–15 Block  16 Upsample  17 conv  18 Block  19 conv(64→3)
 *
 * A Block is `conv` = Sequential(conv, ReLU, conv, ReLU, conv) (keys `N.conv.0|2|4.*`) plus an
 * identity skip (64 → 64 everywhere in the decoder), then ReLU. Every conv is 3×3, padding 1.
 * Input: the sampler's latent as it is (no 1/0.18215 scale; TAESD is trained on scaled latents).
 * Output: RGB in about [0, 1] (not clamped), 8× the latent's size.
 */
import type { TensorSource } from '../formats/tensor.js';
import { GraphBuilder, type Value } from '../onnx/builder.js';
import { add, conv2d, scale, upsampleNearest2x } from '../onnx/ops.js';
import { UserError } from '../util/errors.js';

export const TAESD_IO = { latent: 'latent', image: 'image' } as const;

/** Width of every hidden layer of the SD/SDXL TAESD decoder. */
export const TAESD_CHANNELS = 64;

/** The Sequential's layout after the first conv: block indices, then the upsample conv index. */
const STAGES: readonly { blocks: readonly number[]; upConv?: number }[] = [
  { blocks: [3, 4, 5], upConv: 7 },
  { blocks: [8, 9, 10], upConv: 12 },
  { blocks: [13, 14, 15], upConv: 17 },
  { blocks: [18] },
];
const FIRST_CONV = 1;
const LAST_CONV = 19;

export interface TaesdBuildOptions {
  contribOps?: boolean;
}

/**
 * Where the decoder's keys start in `src` ('' for taesd_decoder.*, 'decoder.' for a whole TAESD
 * state dict), and its latent channel count (from the first conv).
 * A file that is not a TAESD decoder is a UserError that says which file to use.
 */
export function taesdDecoderLayout(src: TensorSource): { prefix: string; latentChannels: number } {
  for (const prefix of ['', 'decoder.']) {
    const first = src.info(`${prefix}${FIRST_CONV}.weight`);
    if (first && first.shape.length === 4 && src.has(`${prefix}${LAST_CONV}.weight`)) {
      return { prefix, latentChannels: first.shape[1]! };
    }
  }
  const diffusers = src.keys().some((k) => k.startsWith('decoder.layers.'));
  throw new UserError(
    `${src.path} is not a TAESD decoder (no "1.weight" … "19.weight" layer keys` +
      (diffusers
        ? '; this looks like a diffusers AutoencoderTiny, whose layers are numbered differently'
        : '') +
      '); use taesd_decoder.safetensors or taesd_decoder.pth from github.com/madebyollin/taesd',
  );
}

/** Block: ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x). */
function taesdBlock(g: GraphBuilder, prefix: string, x: Value): Value {
  const c = TAESD_CHANNELS;
  let h = g.op1('Relu', [conv2d(g, x, `${prefix}.conv.0`, c, c, 3)], {}, { name: prefix });
  h = g.op1('Relu', [conv2d(g, h, `${prefix}.conv.2`, c, c, 3)], {}, { name: prefix });
  h = conv2d(g, h, `${prefix}.conv.4`, c, c, 3);
  return g.op1('Relu', [add(g, h, x, prefix)], {}, { name: prefix });
}

/** The TAESD decoder: latent [B, C, h, w] → image [B, 3, 8h, 8w] in about [0, 1]. */
export function buildTaesdDecoderGraph(src: TensorSource, opts: TaesdBuildOptions = {}): GraphBuilder {
  const { prefix: p, latentChannels } = taesdDecoderLayout(src);
  const c = TAESD_CHANNELS;
  const g = new GraphBuilder('TAESD decoder', src, { contribOps: opts.contribOps });
  const z = g.input(TAESD_IO.latent, 'float32', ['batch', latentChannels, 'height', 'width']);
  // Clamp: 3·tanh(x/3) keeps outlier latents from blowing up the preview.
  let h = scale(g, g.op1('Tanh', [scale(g, z, 1 / 3, 'clamp')], {}, { name: 'clamp' }), 3, 'clamp');
  h = g.op1('Relu', [conv2d(g, h, `${p}${FIRST_CONV}`, latentChannels, c, 3)], {}, { name: `${p}2` });
  for (const stage of STAGES) {
    for (const b of stage.blocks) h = taesdBlock(g, `${p}${b}`, h);
    if (stage.upConv !== undefined) {
      h = upsampleNearest2x(g, h, `${p}${stage.upConv - 1}`);
      h = conv2d(g, h, `${p}${stage.upConv}`, c, c, 3, { bias: false });
    }
  }
  h = conv2d(g, h, `${p}${LAST_CONV}`, c, 3, 3);
  g.output(h, TAESD_IO.image, 'float32', ['batch', 3, 'out_height', 'out_width']);
  return g;
}
