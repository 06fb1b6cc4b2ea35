/**
 * The `<checkpoint>.yaml` ldm config A1111 reads next to a checkpoint. Treated as hostile: size
 * limited, alias expansion bounded, and only the few fields detection needs are read (and type
 * checked) — nothing in it is ever instantiated.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { parse } from 'yaml';
import { UserError } from '../util/errors.js';

/** Real ldm configs are 2–4 KB; anything near this is not a config. */
export const MAX_SIDECAR_BYTES = 64 * 1024;

export interface SidecarConfig {
  path: string;
  /** `model.params.parameterization`; ldm's default when absent is "eps". */
  parameterization: 'eps' | 'v';
  num_heads?: number;
  num_head_channels?: number;
  /** `model.params.scale_factor` (the latent scale: 0.18215 SD 1.x/2.x, 0.13025 SDXL). */
  scale_factor?: number;
  /**
   * Attention heads of each text tower, in embedder order, where the yaml spells the tower out
   * (`clip_text_config.num_attention_heads`, `open_clip_text_config.heads`; real configs name an
   * `arch` instead, whose towers all have 64-wide heads). null where it does not say.
   */
  text_heads?: (number | null)[];
  /** `model.target`, e.g. `ldm.models.diffusion.ddpm.LatentDiffusion` (reported, never used to load code). */
  target?: string;
}

/** A1111's rule: the sidecar of `dir/name.ext` is `dir/name.yaml`. */
export function sidecarPathFor(checkpointPath: string): string | undefined {
  const p = checkpointPath.replace(/\.[^./\\]+$/, '') + '.yaml';
  return p !== checkpointPath && existsSync(p) ? p : undefined;
}

function field(obj: unknown, key: string): unknown {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj)
    ? (obj as Record<string, unknown>)[key]
    : undefined;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/** ldm configs nest 6–8 levels; deep nesting only serves to make the parser crawl. */
const MAX_FLOW_DEPTH = 64;

/** Deepest `[`/`{` nesting outside quotes (a cheap over-estimate, checked before parsing). */
function flowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = '';
      else if (c === '\\' && quote === '"') i++;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
    } else if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
  }
  return max;
}

export function parseSidecarText(path: string, text: string): SidecarConfig {
  if (text.length > MAX_SIDECAR_BYTES) {
    throw new UserError(`${path}: too large for an ldm config (limit ${MAX_SIDECAR_BYTES} bytes)`);
  }
  // Flow collections (`[[[…`, `{a: {a: …`) and compact block sequences (`- - - …`) nest on one line.
  if (flowDepth(text) > MAX_FLOW_DEPTH || new RegExp(`(?:-[ \\t]+){${MAX_FLOW_DEPTH},}`).test(text)) {
    throw new UserError(`${path}: nests deeper than ${MAX_FLOW_DEPTH} levels; not an ldm config`);
  }
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 50, schema: 'core', uniqueKeys: true, logLevel: 'error' });
  } catch (e) {
    throw new UserError(`${path}: not a valid YAML config (${(e as Error).message.split('\n')[0]})`);
  }
  const model = field(doc, 'model');
  const params = field(model, 'params');
  if (params === undefined) {
    throw new UserError(
      `${path}: not an ldm config (no model.params); remove or fix the .yaml next to the checkpoint`,
    );
  }
  const param = field(params, 'parameterization');
  if (param !== undefined && param !== 'eps' && param !== 'v') {
    throw new UserError(
      `${path}: model.params.parameterization must be "eps" or "v", not ${JSON.stringify(param)}`,
    );
  }
  // ldm calls the UNet `unet_config`, sgm (SDXL) `network_config`.
  const unet = field(field(params, 'unet_config') ?? field(params, 'network_config'), 'params');
  const cfg: SidecarConfig = { path, parameterization: param === 'v' ? 'v' : 'eps' };
  const heads = positiveInt(field(unet, 'num_heads'));
  const headCh = positiveInt(field(unet, 'num_head_channels'));
  if (heads !== undefined) cfg.num_heads = heads;
  if (headCh !== undefined) cfg.num_head_channels = headCh;
  const sf = field(params, 'scale_factor');
  if (typeof sf === 'number' && Number.isFinite(sf) && sf > 0) cfg.scale_factor = sf;
  const towerHeads = (p: unknown): number | null =>
    positiveInt(field(field(p, 'clip_text_config'), 'num_attention_heads')) ??
    positiveInt(field(field(p, 'open_clip_text_config'), 'heads')) ??
    null;
  const condStage = field(field(params, 'cond_stage_config'), 'params');
  const embedders = field(field(params, 'conditioner_config'), 'params');
  const embModels = field(embedders, 'emb_models');
  if (condStage !== undefined) cfg.text_heads = [towerHeads(condStage)];
  else if (Array.isArray(embModels)) {
    cfg.text_heads = embModels
      .slice(0, 16)
      .filter((e) => field(e, 'input_key') === 'txt')
      .map((e) => towerHeads(field(e, 'params')));
  }
  const target = field(model, 'target');
  if (typeof target === 'string' && target.length < 200) cfg.target = target;
  return cfg;
}

export function readSidecar(path: string): SidecarConfig {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (size > MAX_SIDECAR_BYTES) {
    throw new UserError(`${path}: ${size} bytes is too large for an ldm config (limit ${MAX_SIDECAR_BYTES})`);
  }
  return parseSidecarText(path, readFileSync(path, 'utf8'));
}
