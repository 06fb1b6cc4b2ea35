/**
 * Generation metadata inside image files: reading what A1111/Forge, ComfyUI, InvokeAI and NovelAI
 * write, and writing the infotext the way A1111's images.save_image_with_geninfo does
 * (PNG text chunk "parameters"; JPEG/WebP EXIF UserComment).
 *
 * readGenerationInfo reproduces A1111's read_info_from_image; readImageMetadata adds what the
 * other tools store, decoded, for `sdstudio pnginfo` and the API.
 */
import { open } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { UserError } from '../util/errors.js';
import { findSampler } from '../sampling/registry.js';
import { pyFloatRepr } from './infotext.js';
import { decodeTextChunk, isPng, pngSize, readPngChunks, addPngTextChunk } from '../formats/png-chunks.js';
import {
  decodeUserComment,
  exifTiffWithUserComment,
  insertJpegExif,
  insertWebpExif,
  isWebp,
  jpegComment,
  jpegExif,
  readUserCommentFromExif,
  userCommentBytes,
  webpExif,
} from '../formats/exif.js';

export { addPngTextChunk } from '../formats/png-chunks.js';
export { pyFloatRepr } from './infotext.js';

/** Image files larger than this are refused by the metadata reader. */
export const MAX_IMAGE_FILE_BYTES = 512 * 1024 * 1024;
/** All text in one image together may not exceed this (as Pillow's MAX_TEXT_MEMORY). */
export const MAX_TOTAL_TEXT_BYTES = 64 * 1024 * 1024;

export type MetadataSource = 'a1111' | 'comfyui' | 'invokeai' | 'novelai' | 'none';
export type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface ImageMetadata {
  imageFormat: ImageFormat;
  width?: number;
  height?: number;
  /** A1111-style infotext (from "parameters", the EXIF UserComment, or built from NovelAI's data). */
  parameters?: string;
  /** Which tool's metadata this is. */
  source: MetadataSource;
  /** Every text entry found, as stored: PNG text chunks by keyword, "exif comment", "comment". */
  raw: Record<string, string>;
  /** What A1111's read_info_from_image returns next to the infotext (its "items"). */
  items: Record<string, string>;
  comfyui?: { prompt?: unknown; workflow?: unknown };
  invokeai?: { metadata?: unknown; graph?: unknown };
  novelai?: { description?: string; comment?: unknown };
  /** Damage found while reading (bad CRC, truncated chunk, oversized text) — the rest is still read. */
  problems: string[];
}

/** Keys of Pillow's image.info that A1111 drops from "items" (images.IGNORED_INFO_KEYS). */
const IGNORED_INFO_KEYS = new Set([
  'jfif',
  'jfif_version',
  'jfif_unit',
  'jfif_density',
  'dpi',
  'exif',
  'loop',
  'background',
  'timestamp',
  'duration',
  'progressive',
  'progression',
  'icc_profile',
  'chromaticity',
  'photoshop',
]);

async function readInput(input: string | Uint8Array): Promise<Uint8Array> {
  if (typeof input !== 'string') return input;
  let fh;
  try {
    fh = await open(input, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${input}: no such file`);
    if (code === 'EISDIR') throw new UserError(`${input} is a folder, not an image file`);
    throw new UserError(`${input}: cannot open (${code ?? String(err)})`);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new UserError(`${input} is a folder, not an image file`);
    if (!st.isFile()) throw new UserError(`${input} is not a regular file`);
    if (st.size > MAX_IMAGE_FILE_BYTES) {
      throw new UserError(
        `${input} is ${st.size} bytes; images over ${MAX_IMAGE_FILE_BYTES} bytes are not read`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

function isJpeg(buf: Uint8Array): boolean {
  return buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** How Python's f-string shows a value json.loads produced (ints and floats kept apart by the source text). */
function pyJsonField(json: Record<string, unknown>, source: string, key: string): string {
  const v = json[key];
  if (v === undefined) throw new Error(`missing "${key}"`);
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (v === null) return 'None';
  if (typeof v === 'number') {
    const esc = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const m = new RegExp(`"${esc}"\\s*:\\s*(-?\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?)`).exec(source);
    const isFloat = m ? /[.eE]/.test(m[1]) : !Number.isInteger(v);
    return isFloat ? pyFloatRepr(v) : String(v);
  }
  return JSON.stringify(v);
}

/** sd_samplers.samplers_map: a sampler name or alias (any case, no schedule suffix) to its A1111 name. */
function a1111SamplerName(name: string): string | undefined {
  const found = findSampler(name);
  return found && !found.scheduler ? found.sampler.label : undefined;
}

/** A1111's infotext for a NovelAI image (read_info_from_image's NovelAI branch). */
function novelAiInfotext(items: Record<string, string>, width: number, height: number): string {
  const source = items['Comment'];
  if (source === undefined) throw new Error('no Comment');
  const json = JSON.parse(source) as Record<string, unknown>;
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error('Comment is not an object');
  const samplerRaw = json['sampler'];
  if (samplerRaw === undefined) throw new Error('missing "sampler"');
  const sampler = (typeof samplerRaw === 'string' && a1111SamplerName(samplerRaw)) || 'Euler a';
  const description = items['Description'];
  if (description === undefined) throw new Error('no Description');
  const f = (k: string): string => pyJsonField(json, source, k);
  return (
    `${description}\nNegative prompt: ${f('uc')}\n` +
    `Steps: ${f('steps')}, Sampler: ${sampler}, CFG scale: ${f('scale')}, Seed: ${f('seed')}, ` +
    `Size: ${width}x${height}, Clip skip: 2, ENSD: 31337`
  );
}

interface InfoScan {
  imageFormat: ImageFormat;
  width?: number;
  height?: number;
  /** Pillow's image.info restricted to text values, in file order (later duplicates win). */
  info: Map<string, string>;
  exif?: Uint8Array;
  problems: string[];
}

function scanPng(buf: Uint8Array): InfoScan {
  const { chunks, problems } = readPngChunks(buf);
  const info = new Map<string, string>();
  let total = 0;
  let exif: Uint8Array | undefined;
  for (const c of chunks) {
    if (c.type === 'eXIf' && c.crcOk) exif ??= c.data;
    if (c.type !== 'tEXt' && c.type !== 'zTXt' && c.type !== 'iTXt') continue;
    if (!c.crcOk) continue; // reported in problems; a damaged chunk is not trusted
    try {
      const t = decodeTextChunk(c);
      total += t.text.length;
      if (total > MAX_TOTAL_TEXT_BYTES) {
        problems.push(`text chunks exceed ${MAX_TOTAL_TEXT_BYTES} bytes; the rest are skipped`);
        break;
      }
      info.set(t.key, t.text);
    } catch (err) {
      problems.push(
        `${c.type} chunk at byte ${c.offset}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return { imageFormat: 'png', ...pngSize(chunks), info, exif, problems };
}

function scan(buf: Uint8Array, what: string): InfoScan {
  if (isPng(buf)) return scanPng(buf);
  if (isJpeg(buf)) {
    const info = new Map<string, string>();
    const com = jpegComment(buf);
    if (com) info.set('comment', new TextDecoder('utf-8').decode(com).replaceAll('\ufffd', ''));
    return { imageFormat: 'jpeg', info, exif: jpegExif(buf), problems: [] };
  }
  if (isWebp(buf)) return { imageFormat: 'webp', info: new Map(), exif: webpExif(buf), problems: [] };
  throw new UserError(`${what} is not a PNG, JPEG or WebP image`);
}

function a1111Read(s: InfoScan): { geninfo: string | null; items: Map<string, string> } {
  const items = new Map(s.info);
  let geninfo: string | null = items.get('parameters') ?? null;
  items.delete('parameters');
  if (s.exif) {
    const comment = readUserCommentFromExif(s.exif);
    const text = comment ? decodeUserComment(comment) : '';
    if (text) geninfo = text;
  } else if (items.has('comment')) {
    geninfo = items.get('comment')!;
  }
  for (const k of IGNORED_INFO_KEYS) items.delete(k);
  if (items.get('Software') === 'NovelAI') {
    try {
      geninfo = novelAiInfotext(Object.fromEntries(items), s.width ?? 0, s.height ?? 0);
    } catch {
      // A1111 reports "Error parsing NovelAI image generation parameters" and keeps what it had.
    }
  }
  return { geninfo, items };
}

/**
 * A1111's images.read_info_from_image: the infotext (or null) and the other info items.
 * Throws UserError for a missing file or one that is not a PNG, JPEG or WebP image.
 */
export async function readGenerationInfo(
  input: string | Uint8Array,
): Promise<{ geninfo: string | null; items: Record<string, string> }> {
  const buf = await readInput(input);
  const { geninfo, items } = a1111Read(scan(buf, typeof input === 'string' ? input : 'the data'));
  return { geninfo, items: Object.fromEntries(items) };
}

/** Everything a file says about how it was generated, by whichever tool made it. */
export async function readImageMetadata(input: string | Uint8Array): Promise<ImageMetadata> {
  const buf = await readInput(input);
  const s = scan(buf, typeof input === 'string' ? input : 'the data');
  const { geninfo, items } = a1111Read(s);
  const raw = Object.fromEntries(s.info);
  if (s.exif) {
    const c = readUserCommentFromExif(s.exif);
    if (c) raw['exif comment'] = decodeUserComment(c);
  }
  const meta: ImageMetadata = {
    imageFormat: s.imageFormat,
    width: s.width,
    height: s.height,
    source: 'none',
    raw,
    items: Object.fromEntries(items),
    problems: s.problems,
  };
  if (geninfo) meta.parameters = geninfo;
  if (raw['Software'] === 'NovelAI') {
    meta.novelai = {
      description: raw['Description'],
      comment: raw['Comment'] ? tryJson(raw['Comment']) : undefined,
    };
  }
  if ('prompt' in raw || 'workflow' in raw) {
    meta.comfyui = {};
    if ('prompt' in raw) meta.comfyui.prompt = tryJson(raw['prompt']);
    if ('workflow' in raw) meta.comfyui.workflow = tryJson(raw['workflow']);
  }
  const invoke = raw['invokeai_metadata'] ?? raw['sd-metadata'];
  if (invoke !== undefined || 'invokeai_graph' in raw) {
    meta.invokeai = {};
    if (invoke !== undefined) meta.invokeai.metadata = tryJson(invoke);
    if ('invokeai_graph' in raw) meta.invokeai.graph = tryJson(raw['invokeai_graph']);
  }
  if (meta.novelai && geninfo) meta.source = 'novelai';
  else if (geninfo) meta.source = 'a1111';
  else if (meta.comfyui) meta.source = 'comfyui';
  else if (meta.invokeai) meta.source = 'invokeai';
  return meta;
}

// --- writing --------------------------------------------------------------------------------------

/** Raw interleaved 8-bit pixels (1, 3 or 4 channels). */
export interface RawPixels {
  width: number;
  height: number;
  data: Uint8Array;
  channels?: 1 | 3 | 4;
}

function toSharp(image: RawPixels | Sharp): Sharp {
  if (!('data' in image)) return image.clone();
  const channels = image.channels ?? ((image.data.length / (image.width * image.height)) as 1 | 3 | 4);
  if (![1, 3, 4].includes(channels) || image.data.length !== image.width * image.height * channels) {
    throw new Error(
      `pixel buffer of ${image.data.length} bytes does not match ${image.width}x${image.height}`,
    );
  }
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels } });
}

/**
 * PNG bytes with the infotext in a "parameters" text chunk (tEXt, or iTXt when not Latin-1),
 * as A1111 saves every output. `extra` adds further text chunks (e.g. an embedding's data).
 */
export async function encodePngWithInfotext(
  image: RawPixels | Sharp,
  infotext: string | null,
  extra: Record<string, string> = {},
): Promise<Buffer> {
  let png: Buffer = await toSharp(image).png().toBuffer();
  if (infotext !== null) png = addPngTextChunk(png, 'parameters', infotext);
  for (const [k, v] of Object.entries(extra)) png = addPngTextChunk(png, k, v);
  return png;
}

/** Adds the infotext to JPEG or WebP bytes as A1111 does: EXIF UserComment, "UNICODE" + UTF-16BE. */
export function addExifUserComment(image: Uint8Array, text: string): Buffer {
  const tiff = exifTiffWithUserComment(userCommentBytes(text));
  if (isJpeg(image)) return insertJpegExif(image, tiff);
  if (isWebp(image)) return insertWebpExif(image, tiff);
  throw new Error('EXIF UserComment can be added to JPEG or WebP data only');
}

/** JPEG (quality 80, A1111's default) with the infotext in EXIF. */
export async function encodeJpegWithInfotext(
  image: RawPixels | Sharp,
  infotext: string | null,
  quality = 80,
): Promise<Buffer> {
  const jpeg = await toSharp(image).removeAlpha().jpeg({ quality }).toBuffer();
  return infotext === null ? jpeg : addExifUserComment(jpeg, infotext);
}

/** WebP (quality 80, A1111's default) with the infotext in EXIF. */
export async function encodeWebpWithInfotext(
  image: RawPixels | Sharp,
  infotext: string | null,
  quality = 80,
  lossless = false,
): Promise<Buffer> {
  const webp = await toSharp(image).removeAlpha().webp({ quality, lossless }).toBuffer();
  return infotext === null ? webp : addExifUserComment(webp, infotext);
}
