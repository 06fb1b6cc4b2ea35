/**
 * Model tools as server jobs (the web UI's Models screen): a request body is checked and its model
 * names resolved through the catalog (names never become paths) into a `ToolTask`, which the queue
 * runs like a generation, one at a time, through `ModelToolExecutor` — a thin call into src/tools
 * (merge, convert, extract, inspect, hash) with its progress. Files are written only into the model
 * folders, never over an existing file, and the catalog is refreshed once one is written.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ModelCatalog } from './catalog.js';
import type { ToolExecutor, ToolHooks, ToolTask } from './jobs.js';
import { ValidationError } from './requests.js';
import { UserError } from '../util/errors.js';

export const TOOLS = ['merge', 'convert', 'extract', 'inspect', 'hash'] as const;
export type ToolName = (typeof TOOLS)[number];

/** A1111's merger labels and ours (the CLI's --mode) both work. */
const METHODS: Record<string, 'weighted-sum' | 'add-difference' | 'no-interp'> = {
  'Weighted sum': 'weighted-sum',
  'Add difference': 'add-difference',
  'No interpolation': 'no-interp',
  'weighted-sum': 'weighted-sum',
  'add-difference': 'add-difference',
  'no-interp': 'no-interp',
};
export const METHOD_NAMES = Object.keys(METHODS);
export const PART_NAMES = ['unet', 'vae', 'text-encoder', 'text-encoder-2'] as const;
export const DTYPE_NAMES = ['keep', 'fp16', 'bf16', 'fp32'] as const;

/** The POST /api/v1/tools body (A1111's merger argument names for the merger). */
export interface ToolBody {
  tool: ToolName;
  primary_model_name?: string;
  secondary_model_name?: string;
  tertiary_model_name?: string;
  interp_method?: string;
  multiplier?: number;
  save_as_half?: boolean;
  bake_in_vae?: string;
  discard_weights?: string;
  custom_name?: string;
  model?: string;
  dtype?: (typeof DTYPE_NAMES)[number];
  prune?: boolean;
  no_vae?: boolean;
  part?: (typeof PART_NAMES)[number];
}

/** Where each kind of output goes (A1111's folders; ComfyUI's names for bare UNets / text encoders). */
export interface ToolDirs {
  checkpoints: string;
  vae: string;
  unet: string;
  textEncoders: string;
}

type Kind = 'checkpoint' | 'vae' | 'lora' | 'hypernetwork';

/** A listed model by name: checkpoints by A1111's aliases, then VAEs, LoRAs, hypernetworks. */
function resolveModel(catalog: ModelCatalog, name: string | undefined, field: string) {
  if (!name?.trim()) throw new ValidationError(field, `${field}: choose a model`);
  const c = catalog.lookupCheckpoint(name);
  if (c) return { path: c.filename, kind: 'checkpoint' as Kind };
  const v = catalog.vaes.find((x) => x.model_name === name || basename(x.filename) === name);
  if (v) return { path: v.filename, kind: 'vae' as Kind };
  const l = catalog.loras.find((x) => x.name === name || basename(x.path) === name);
  if (l) return { path: l.path, kind: 'lora' as Kind };
  const h = catalog.hypernetworks.find((x) => x.name === name || basename(x.path) === name);
  if (h) return { path: h.path, kind: 'hypernetwork' as Kind };
  throw new ValidationError(
    field,
    `${field}: model "${name.slice(0, 200)}" not found; GET /sdapi/v1/sd-models, /sd-vae and /loras list the models`,
  );
}

function checkpointOf(catalog: ModelCatalog, name: string | undefined, field: string): string {
  if (!name?.trim()) throw new ValidationError(field, `${field}: choose a checkpoint`);
  const c = catalog.lookupCheckpoint(name);
  if (!c) {
    throw new ValidationError(
      field,
      `${field}: checkpoint "${name.slice(0, 200)}" not found; GET /sdapi/v1/sd-models lists them`,
    );
  }
  return c.filename;
}

/**
 * The output file in `dir` for `custom_name`: a plain file name (no folders), `.safetensors`
 * added when it has no extension, refused when it exists (A1111 would overwrite; a click should
 * never destroy a model).
 */
function outputPath(dir: string, name: string, field = 'custom_name'): string {
  const n = name.trim();
  if (!n) throw new ValidationError(field, `${field}: give the output file a name`);
  const control = [...n].some((ch) => ch.charCodeAt(0) < 32);
  if (n.length > 200 || /[/\\]/.test(n) || n.startsWith('.') || control) {
    throw new ValidationError(
      field,
      `${field}: "${n.slice(0, 200)}" must be a plain file name (no folders, not starting with ".")`,
    );
  }
  if (/\.(ckpt|pt|pth|bin)$/i.test(n)) {
    throw new ValidationError(field, `${field}: "${n}" must end in .safetensors (the only format written)`);
  }
  const file = /\.safetensors$/i.test(n) ? n : `${n}.safetensors`;
  const out = join(dir, file);
  if (existsSync(out)) {
    throw new ValidationError(field, `${field}: ${file} exists already in ${dir}; choose another name`);
  }
  return out;
}

const stemOf = (p: string) => basename(p).replace(/\.[^.]+$/, '');
const round2 = (x: number) => String(Math.round(x * 100) / 100);

/** The name of an unnamed merge: its models and weights (A1111 too names one after its inputs). */
function defaultMergeName(
  a: string,
  b: string | undefined,
  c: string | undefined,
  method: string,
  m: number,
) {
  if (method === 'no-interp' || !b) return `${stemOf(a)}-converted`;
  if (method === 'weighted-sum') return `${stemOf(a)}_${round2(1 - m)}-${stemOf(b)}_${round2(m)}-merged`;
  return `${stemOf(a)}_${round2(1)}-${stemOf(b)}_${round2(m)}-${stemOf(c ?? '')}_${round2(-m)}-merged`;
}

/** Body → task, with every input checked before anything runs (422 naming the field). */
export function buildToolTask(catalog: ModelCatalog, dirs: ToolDirs, body: ToolBody): ToolTask {
  switch (body.tool) {
    case 'merge': {
      const method = METHODS[body.interp_method ?? 'Weighted sum'];
      if (!method) {
        throw new ValidationError(
          'interp_method',
          `interp_method: one of ${METHOD_NAMES.slice(0, 3).join(', ')}`,
        );
      }
      const a = checkpointOf(catalog, body.primary_model_name, 'primary_model_name');
      const b =
        method === 'no-interp'
          ? undefined
          : checkpointOf(catalog, body.secondary_model_name, 'secondary_model_name');
      const c =
        method === 'add-difference'
          ? checkpointOf(catalog, body.tertiary_model_name, 'tertiary_model_name')
          : undefined;
      const multiplier = body.multiplier ?? 0.3;
      if (!Number.isFinite(multiplier))
        throw new ValidationError('multiplier', 'multiplier: must be a number');
      let bakeVae: string | undefined;
      if (body.bake_in_vae && body.bake_in_vae !== 'None') {
        bakeVae = catalog.findVae(body.bake_in_vae, 'bake_in_vae')?.filename;
      }
      const discard = body.discard_weights?.trim() || undefined;
      if (discard) {
        try {
          new RegExp(discard);
        } catch (e) {
          throw new ValidationError(
            'discard_weights',
            `discard_weights: not a valid regular expression (${(e as Error).message})`,
          );
        }
      }
      const name = body.custom_name?.trim() || defaultMergeName(a, b, c, method, multiplier);
      const out = outputPath(dirs.checkpoints, name);
      return { tool: 'merge', a, b, c, method, multiplier, fp16: !!body.save_as_half, bakeVae, discard, out };
    }
    case 'convert': {
      const m = resolveModel(catalog, body.model, 'model');
      if (m.kind !== 'checkpoint' && m.kind !== 'vae') {
        throw new ValidationError(
          'model',
          `model: the converter takes a checkpoint or a VAE, not a ${m.kind}`,
        );
      }
      const dtype = body.dtype && body.dtype !== 'keep' ? body.dtype : undefined;
      const name =
        body.custom_name?.trim() || `${stemOf(m.path)}-${dtype ?? 'converted'}${body.prune ? '-pruned' : ''}`;
      const out = outputPath(m.kind === 'vae' ? dirs.vae : dirs.checkpoints, name);
      return { tool: 'convert', model: m.path, dtype, prune: !!body.prune, noVae: !!body.no_vae, out };
    }
    case 'extract': {
      const model = checkpointOf(catalog, body.model, 'model');
      const part = body.part;
      if (!part || !PART_NAMES.includes(part)) {
        throw new ValidationError('part', `part: one of ${PART_NAMES.join(', ')}`);
      }
      const dir = part === 'vae' ? dirs.vae : part === 'unet' ? dirs.unet : dirs.textEncoders;
      const out = outputPath(dir, body.custom_name?.trim() || `${stemOf(model)}-${part}`);
      return { tool: 'extract', model, part, out };
    }
    case 'inspect':
    case 'hash':
      return { tool: body.tool, model: resolveModel(catalog, body.model, 'model').path };
    default:
      throw new ValidationError('tool', `tool: one of ${TOOLS.join(', ')}`);
  }
}

/** A task as the API shows it: file names, not the server's paths. */
export function toolTaskView(task: ToolTask): Record<string, unknown> {
  const view: Record<string, unknown> = { ...task };
  for (const k of ['a', 'b', 'c', 'bakeVae', 'model', 'out']) {
    if (typeof view[k] === 'string') view[k] = basename(view[k] as string);
  }
  return view;
}

/** Runs a task by calling the tool's own function; refreshes the catalog after writing a file. */
export class ModelToolExecutor implements ToolExecutor {
  constructor(
    private readonly catalog: ModelCatalog,
    private readonly opts: { cacheDir?: string },
  ) {}

  /** The writer's `<out>.tmp-<pid>` of a process that was killed mid-write (the pid is gone). */
  async recover(task: ToolTask): Promise<void> {
    if (!('out' in task)) return;
    const prefix = `${basename(task.out)}.tmp-`;
    const dir = dirname(task.out);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (f.startsWith(prefix) && /^\d+$/.test(f.slice(prefix.length)))
        await rm(join(dir, f), { force: true });
    }
  }

  async run(task: ToolTask, hooks: ToolHooks): Promise<Record<string, unknown>> {
    const step = (phase: string) => (done: number, total: number) => hooks.onProgress({ phase, done, total });
    switch (task.tool) {
      case 'inspect': {
        const { inspectFile } = await import('../tools/inspect.js');
        const report = await inspectFile(task.model, {
          cacheDir: this.opts.cacheDir,
          onHashProgress: step('hashing'),
        });
        return { file: basename(task.model), report };
      }
      case 'hash': {
        const { hashFile } = await import('../tools/hash.js');
        const { cached, ...h } = await hashFile(task.model, {
          cacheDir: this.opts.cacheDir,
          onProgress: step('hashing'),
        });
        return { file: basename(task.model), cached, ...h };
      }
      default:
        break;
    }
    // Checked again here: a job queued earlier may have written the same name meanwhile.
    if (existsSync(task.out))
      throw new UserError(`custom_name: ${basename(task.out)} exists already`, 2, 409);
    await mkdir(dirname(task.out), { recursive: true });
    let tensors: number;
    if (task.tool === 'merge') {
      const { mergeModels } = await import('../tools/merge.js');
      const r = await mergeModels({ a: task.a, b: task.b, c: task.c }, task.out, {
        mode: task.method,
        alpha: task.multiplier,
        fp16: task.fp16,
        bakeVae: task.bakeVae,
        discard: task.discard,
        cacheDir: this.opts.cacheDir,
        onHashProgress: (file, done, total) =>
          hooks.onProgress({ phase: `hashing ${basename(file)}`, done, total }),
        onProgress: step('merging'),
      });
      tensors = r.tensors;
    } else if (task.tool === 'convert') {
      const { convertModel } = await import('../tools/convert.js');
      const r = await convertModel(task.model, task.out, {
        dtype: task.dtype,
        prune: task.prune,
        noVae: task.noVae,
        onProgress: step('converting'),
      });
      tensors = r.tensors;
    } else {
      const { extractPart } = await import('../tools/extract.js');
      const r = await extractPart(task.model, task.part, task.out, {
        onProgress: step(`extracting ${task.part}`),
      });
      tensors = r.tensors;
    }
    // The queue holds its lock while a tool runs, so the lists can be refreshed directly.
    await this.catalog.refreshCheckpoints();
    await this.catalog.refreshVae();
    const entry = this.catalog.checkpoints.find((c) => c.filename === task.out);
    return {
      file: basename(task.out),
      folder: basename(dirname(task.out)),
      tensors,
      checkpoint: entry?.title ?? null,
    };
  }
}
