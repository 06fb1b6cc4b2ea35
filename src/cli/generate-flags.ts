/**
 * The flags of `sdstudio txt2img` and `sdstudio img2img`, derived from the request's field table
 * (params/fields.ts): their help text, flags → GenerationParams over the A1111 web UI's defaults (or
 * over the infotext of `--params FILE.png`), checked before anything loads; plus the options that
 * are not request fields (files, folders, the engine).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { decodeImage, type DecodedImage } from '../image/images.js';
import { paramsFromInfotext, unetPrecisionFromInfotext } from '../infotext/infotext-fields.js';
import { didYouMean, uiDefaults, type GenerationParams } from '../params/generation.js';
import { FIELDS, SETTINGS, type CliFlag, type FieldSpec, type GenerationMode } from '../params/fields.js';
import { fieldKind } from '../params/validate.js';
import { parseCliArgs, parseDecimal } from './args.js';
import { previewModeOf, type PreviewMode } from '../pipeline/preview-mode.js';
import type { UnetPrecisionChoice } from '../params/unet-precision.js';
import { UserError } from '../util/errors.js';

// The engine, metadata readers and embeddings load lazily, after the arguments are checked, so a
// mistyped flag is answered at once.

type Mode = GenerationMode;

/** A flag of the generation commands that sets a request field (from the field table). */
interface ParamFlag {
  /** JSON path: "steps", "override_settings.CLIP_stop_at_last_layers". */
  path: string;
  spec: FieldSpec;
  cli: CliFlag;
}

/** Every flag that sets a GenerationParams field or setting, in the table's order. */
export const PARAM_FLAGS: readonly ParamFlag[] = [
  ...(Object.entries(FIELDS) as [string, FieldSpec][]).flatMap(([path, spec]) =>
    (spec.cli ?? []).map((cli) => ({ path, spec, cli })),
  ),
  ...(Object.entries(SETTINGS) as [string, FieldSpec][]).flatMap(([key, spec]) =>
    (spec.cli ?? []).map((cli) => ({ path: `override_settings.${key}`, spec, cli })),
  ),
];

/** Options of the commands that are not request fields: files, folders, the engine. */
interface RunOption {
  type: 'string' | 'boolean';
  arg?: string;
  help: string;
  modes?: readonly Mode[];
}

const RUN_OPTIONS = {
  model: {
    type: 'string',
    arg: 'NAME|PATH',
    help: 'checkpoint in <data-dir>/models/Stable-diffusion, or a file (default: the first one there)',
  },
  vae: {
    type: 'string',
    arg: 'NAME|PATH',
    help: 'VAE from <data-dir>/models/VAE, "Automatic" (a .vae.* file beside the checkpoint; default) or "None"',
  },
  mask: {
    type: 'string',
    arg: 'FILE',
    help: 'inpainting mask: white = repaint (or an image with transparency: the transparent part is kept)',
    modes: ['img2img'],
  },
  'embeddings-dir': {
    type: 'string',
    arg: 'DIR',
    help: 'textual-inversion embeddings (default <data-dir>/embeddings)',
  },
  'lora-dir': {
    type: 'string',
    arg: 'DIR',
    help:
      'LoRA/LyCORIS files for <lora:name:te:unet> tags (default <data-dir>/models/Lora; ' +
      '<data-dir>/models/LyCORIS is searched too); name = file name or ss_output_name',
  },
  'hypernetwork-dir': {
    type: 'string',
    arg: 'DIR',
    help: 'hypernetwork .pt files for <hypernet:name:m> tags (default <data-dir>/models/hypernetworks)',
  },
  params: {
    type: 'string',
    arg: 'FILE.png',
    help: "start from the parameters in an image's infotext; other flags override them",
  },
  out: { type: 'string', arg: 'DIR', help: 'outputs folder (default <data-dir>/outputs)' },
  'no-grid': { type: 'boolean', help: "do not save a grid of the job's images" },
  'data-dir': { type: 'string', arg: 'DIR', help: 'A1111-style data folder (default: the current folder)' },
  'clip-vocab': {
    type: 'string',
    arg: 'PATH',
    help: 'CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz); also $SDSTUDIO_CLIP_VOCAB',
  },
  provider: {
    type: 'string',
    arg: 'NAME',
    help: 'onnxruntime execution provider: cpu (default), cuda, webgpu, …',
  },
  precision: {
    type: 'string',
    arg: 'fp32|fp16|int8',
    help:
      'UNet arithmetic (default fp32 on the CPU, fp16 on GPU providers; --params images reuse theirs ' +
      'where the provider runs it). fp16: UNet and text encoder in float16 (the VAE in float32), GPU ' +
      'only. int8: faster UNet on the CPU provider, slightly different images, the first use of a ' +
      'checkpoint quantizes it once into the weights cache',
  },
  prediction: {
    type: 'string',
    arg: 'v|eps',
    help:
      'what the UNet predicts, overriding the file: SD 2.x 768-v and 512-base have the same keys; ' +
      'without a <model>.yaml sidecar the model is probed once as A1111 does (see README)',
  },
  'cache-dir': { type: 'string', arg: 'DIR', help: 'weights cache folder' },
  'live-preview': {
    type: 'string',
    arg: 'FILE.png',
    help: 'keep FILE.png updated with a preview of the batch while sampling',
  },
  'preview-every': { type: 'string', arg: 'N', help: 'preview every N steps (default 1)' },
  'preview-type': {
    type: 'string',
    arg: 'TYPE',
    help:
      'TAESD (default when <data-dir>/models/VAE-taesd/taesd_decoder.safetensors is there), ' +
      '"Approx cheap" (default otherwise; also "Approx NN") or Full',
  },
} as const satisfies Record<string, RunOption>;

type ParamOptions = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;

/** The `parseArgs` options of txt2img and img2img: every param flag, then the run options. */
export const OPTIONS = {
  ...(Object.fromEntries(
    PARAM_FLAGS.map(({ cli }) => [
      cli.flag,
      cli.arg === undefined
        ? { type: 'boolean' }
        : cli.multiple
          ? { type: 'string', multiple: true }
          : { type: 'string' },
    ]),
  ) as ParamOptions),
  ...(Object.fromEntries(Object.entries(RUN_OPTIONS).map(([name, o]) => [name, { type: o.type }])) as {
    [K in keyof typeof RUN_OPTIONS]: { type: (typeof RUN_OPTIONS)[K]['type'] };
  }),
  // Read by name in generate-command.ts.
  prompt: { type: 'string' },
} as const;

export type Values = ReturnType<typeof parseGenerateArgs>['values'];

/** The command line of `sdstudio txt2img|img2img`, values starting with `-` included. */
export function parseGenerateArgs(mode: Mode, argv: readonly string[]) {
  return parseCliArgs(argv, OPTIONS, mode);
}

const modesOf = (f: ParamFlag): readonly Mode[] => f.cli.modes ?? f.spec.modes ?? ['txt2img', 'img2img'];

/** What the help shows as a flag's default (the web UI's default, as the CLI uses it). */
function helpDefault(f: ParamFlag): string | undefined {
  if (f.cli.defaultText !== undefined) return f.cli.defaultText;
  if (f.cli.arg === undefined) return undefined;
  const d = f.spec.uiDefault ?? (f.spec.schema as { default?: unknown }).default;
  if (d === null || d === undefined || d === '' || (Array.isArray(d) && d.length === 0)) return undefined;
  if (f.cli.choices) {
    const word = Object.entries(f.cli.choices).find(([, v]) => v === d)?.[0];
    if (typeof d === 'number') return word;
  }
  return typeof d === 'string' && /[\s,]/.test(d) ? `"${d}"` : String(d);
}

const NBSP = '\u00a0';

/** "  --flag ARG        help (default X)", wrapped under the help column. */
function helpLine(flag: string, arg: string | undefined, text: string): string {
  const head = `  --${flag}${arg ? ` ${arg}` : ''}`;
  const width = 110;
  const col = 27;
  const words = text.split(' ');
  const lines: string[] = [];
  let line = head.length < col - 1 ? head.padEnd(col) : `${head} `;
  let fresh = true;
  for (const w of words) {
    if (!fresh && line.length + w.length + 1 > width) {
      lines.push(line.trimEnd());
      line = ' '.repeat(col);
      fresh = true;
    }
    line += (fresh ? '' : ' ') + w;
    fresh = false;
  }
  lines.push(line.trimEnd());
  return lines.join('\n').replaceAll(NBSP, ' ') + '\n';
}

function paramHelp(f: ParamFlag): string {
  const def = helpDefault(f);
  const choices = f.cli.choices && f.cli.arg === 'MODE' ? `: ${Object.keys(f.cli.choices).join(', ')}` : '';
  // The default is kept on one line (no break inside "DPM++ 2M").
  const tail = def !== undefined ? ` (default ${def.replace(/ /g, NBSP)})` : '';
  return helpLine(f.cli.flag, f.cli.arg, `${f.cli.help}${choices}${tail}`);
}

function runHelp(names: readonly (keyof typeof RUN_OPTIONS)[]): string {
  return names.map((n) => helpLine(n, (RUN_OPTIONS[n] as RunOption).arg, RUN_OPTIONS[n].help)).join('');
}

const isImg2ImgOnly = (f: ParamFlag) => !modesOf(f).includes('txt2img');
const isHires = (f: ParamFlag) => !!f.cli.hires || f.cli.flag === 'hires';

export const COMMON_USAGE =
  `Generation options (defaults are A1111's web UI defaults):\n` +
  PARAM_FLAGS.filter((f) => f.cli.flag !== 'prompt' && !isImg2ImgOnly(f) && !isHires(f))
    .map(paramHelp)
    .join('') +
  runHelp([
    'model',
    'vae',
    'embeddings-dir',
    'lora-dir',
    'hypernetwork-dir',
    'params',
    'out',
    'no-grid',
    'data-dir',
    'clip-vocab',
    'provider',
    'precision',
    'prediction',
    'cache-dir',
    'live-preview',
    'preview-every',
    'preview-type',
  ]);

export const HIRES_USAGE =
  `Hires fix (txt2img):\n` +
  PARAM_FLAGS.filter((f) => isHires(f))
    // --hires first, then its settings.
    .sort((a, b) => Number(b.cli.flag === 'hires') - Number(a.cli.flag === 'hires'))
    .map(paramHelp)
    .join('');

export const IMG2IMG_USAGE =
  `img2img and inpainting:\n` +
  PARAM_FLAGS.filter((f) => isImg2ImgOnly(f))
    .map(paramHelp)
    .join('') +
  runHelp(['mask']);

/** The A1111 web UI's defaults, which a person at a terminal expects (the API's differ: steps 50, Euler). */
export const UI_DEFAULTS: Partial<GenerationParams> = uiDefaults();

/** Flags that were given, as GenerationParams fields (numbers as plain decimals). */
export function paramsFromFlags(values: Values, mode: Mode): Partial<GenerationParams> {
  const v = values as Record<string, string | boolean | string[] | undefined>;
  const given = PARAM_FLAGS.filter((f) => v[f.cli.flag] !== undefined);
  const hiresGiven = given.find((f) => isHires(f));
  if (mode === 'img2img' && hiresGiven) {
    throw new UserError('the hires fix is a txt2img option; drop --hires* for img2img');
  }
  const wrongMode = [
    ...given.filter((f) => !modesOf(f).includes(mode)).map((f) => f.cli.flag),
    ...(Object.entries(RUN_OPTIONS) as [string, RunOption][])
      .filter(([name, o]) => o.modes && !o.modes.includes(mode) && v[name] !== undefined)
      .map(([name]) => name),
  ];
  if (wrongMode.length) {
    throw new UserError(
      `--${wrongMode[0]} is an ${mode === 'txt2img' ? 'img2img' : 'txt2img'} option; use \`sdstudio ${mode === 'txt2img' ? 'img2img' : 'txt2img'}\``,
    );
  }
  const p: Record<string, unknown> = {};
  const o: Record<string, unknown> = {};
  for (const f of given) {
    const value = flagValue(f, v[f.cli.flag]!);
    if (f.path.startsWith('override_settings.')) o[f.path.slice('override_settings.'.length)] = value;
    else p[f.path] = value;
  }
  if (hiresGiven) p.enable_hr = true;
  if (Object.keys(o).length) p.override_settings = o;
  return p as Partial<GenerationParams>;
}

/** One flag's text → the field's value, by the field's schema. */
function flagValue(f: ParamFlag, raw: string | boolean | string[]): unknown {
  const flag = `--${f.cli.flag}`;
  if (f.cli.arg === undefined) return f.cli.value ?? true;
  if (f.cli.multiple) return Array.isArray(raw) ? raw : [raw];
  const text = String(raw);
  if (f.cli.choices) {
    const key = Object.keys(f.cli.choices).find((k) => k === text.trim().toLowerCase());
    if (key === undefined) {
      // Shown as the field's own values where they are words (GPU, "No norm"), else as the flag's.
      const words = [
        ...new Set(
          Object.entries(f.cli.choices).map(([k, val]) =>
            typeof val === 'string' ? (val.includes(' ') ? `"${val}"` : val) : k,
          ),
        ),
      ];
      const hint = didYouMean(text, Object.keys(f.cli.choices));
      throw new UserError(`${flag} must be one of ${words.join(', ')} (got "${text}")${hint}`);
    }
    return f.cli.choices[key];
  }
  const { type } = fieldKind(f.spec.schema);
  if (type.kind === 'integer' || type.kind === 'number' || type.kind === 'enum')
    return parseDecimal(text, flag);
  return text;
}

/**
 * How a message names a field: the flag that set it when one did (`--batch-count`, `--clip-skip`),
 * else its JSON name (a field from `--params FILE.png`).
 */
export function flagNameOf(values: Values, mode: Mode): (path: string) => string | undefined {
  const v = values as Record<string, unknown>;
  return (path) => {
    const f = PARAM_FLAGS.find(
      (x) => x.path === path && v[x.cli.flag] !== undefined && modesOf(x).includes(mode),
    );
    if (f) return `--${f.cli.flag}`;
    // mask_blur_x/y come from --mask-blur.
    if ((path === 'mask_blur_x' || path === 'mask_blur_y') && v['mask-blur'] !== undefined)
      return '--mask-blur';
    return undefined;
  };
}

/** `--live-preview FILE --preview-every N --preview-type TYPE`, checked before anything loads. */
export function previewFlags(
  values: Values,
): { path: string; every: number; mode: PreviewMode; explicit: boolean } | null {
  if (values['live-preview'] === undefined) {
    const stray = (['preview-every', 'preview-type'] as const).find((f) => values[f] !== undefined);
    if (stray) throw new UserError(`--${stray} needs --live-preview FILE.png`);
    return null;
  }
  const everyText = values['preview-every'];
  const every = everyText === undefined ? 1 : parseDecimal(everyText, '--preview-every');
  if (!Number.isInteger(every) || every < 1) throw new UserError('--preview-every needs a whole number ≥ 1');
  const type = values['preview-type'];
  return {
    path: resolve(values['live-preview']),
    every,
    mode: type === undefined ? 'taesd' : previewModeOf(type),
    explicit: type !== undefined,
  };
}

export async function readImageFile(path: string, what: string): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new UserError(`${what} ${path} cannot be read; check the path`);
  }
  return decodeImage(bytes, `${what} ${path}`);
}

/** Parameters of `--params FILE.png`, and the UNet precision its infotext records. */
export async function paramsFromImage(
  path: string,
): Promise<{ params: Partial<GenerationParams>; precision?: UnetPrecisionChoice; loraHashes?: string }> {
  const { readGenerationInfo } = await import('../infotext/image-metadata.js');
  const { parseInfotext } = await import('../infotext/infotext.js');
  const { geninfo } = await readGenerationInfo(path);
  if (!geninfo)
    throw new UserError(
      `${path} has no generation parameters (no A1111 "parameters" text in it); give an image SD Studio or A1111 saved, or drop --params`,
    );
  const dict = parseInfotext(geninfo);
  const loraHashes = typeof dict['Lora hashes'] === 'string' ? dict['Lora hashes'] : undefined;
  return { params: paramsFromInfotext(dict), precision: unetPrecisionFromInfotext(dict), loraHashes };
}
