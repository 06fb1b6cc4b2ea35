/**
 * Image utilities of A1111's API: POST /sdapi/v1/png-info, /extra-single-image and
 * /extra-batch-images (the built-in upscalers None, Lanczos, Nearest), /interrogate (no captioning
 * model yet: answered as A1111 answers an unknown model).
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { flatten, resizeRgb, crop, encodePng, type RgbImage } from '../../image/images.js';
import { addPngTextChunk, readImageMetadata } from '../../infotext/image-metadata.js';
import { parseInfotext } from '../../infotext/infotext.js';
import { IMAGE_UPSCALERS } from '../../params/generation.js';
import { UserError } from '../../util/errors.js';
import type { ServerContext } from '../context.js';
import { base64ImageBytes, decodeBase64Image } from '../images.js';
import { ValidationError } from '../requests.js';

const MAX_SIDE = 8192;

const num = (min: number, max: number, def: number) =>
  Type.Optional(Type.Number({ minimum: min, maximum: max, default: def }));
const EXTRAS_FIELDS: Record<string, TSchema> = {
  resize_mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 1, default: 0 })),
  show_extras_results: Type.Optional(Type.Boolean({ default: true })),
  gfpgan_visibility: num(0, 1, 0),
  codeformer_visibility: num(0, 1, 0),
  codeformer_weight: num(0, 1, 0),
  upscaling_resize: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 8, default: 2 })),
  upscaling_resize_w: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SIDE, default: 512 })),
  upscaling_resize_h: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SIDE, default: 512 })),
  upscaling_crop: Type.Optional(Type.Boolean({ default: true })),
  upscaler_1: Type.Optional(Type.String({ default: 'None' })),
  upscaler_2: Type.Optional(Type.String({ default: 'None' })),
  extras_upscaler_2_visibility: num(0, 1, 0),
  upscale_first: Type.Optional(Type.Boolean({ default: false })),
};
const SingleBody = Type.Object(
  { ...EXTRAS_FIELDS, image: Type.Optional(Type.String({ default: '' })) },
  { additionalProperties: true },
);
const BatchBody = Type.Object(
  {
    ...EXTRAS_FIELDS,
    imageList: Type.Array(
      Type.Object(
        { data: Type.String(), name: Type.Optional(Type.String()) },
        { additionalProperties: true },
      ),
      {
        maxItems: 1000,
      },
    ),
  },
  { additionalProperties: true },
);

interface ExtrasOptions {
  resize_mode?: number;
  gfpgan_visibility?: number;
  codeformer_visibility?: number;
  upscaling_resize?: number;
  upscaling_resize_w?: number;
  upscaling_resize_h?: number;
  upscaling_crop?: boolean;
  upscaler_1?: string;
  upscaler_2?: string;
  extras_upscaler_2_visibility?: number;
}

const KERNELS = { Lanczos: 'lanczos3', Nearest: 'nearest' } as const;

function checkUpscaler(name: string, field: string): void {
  if (!IMAGE_UPSCALERS.includes(name)) {
    throw new ValidationError(
      field,
      `${field}: upscaler "${name.slice(0, 100)}" is not available; use one of ${IMAGE_UPSCALERS.join(', ')}`,
    );
  }
}

/** Upscales one image as A1111's postprocessing_upscale does (scale-by or scale-to with crop). */
async function upscaleOne(img: RgbImage, o: ExtrasOptions, name: string): Promise<RgbImage> {
  if (name === 'None') return img;
  let w: number;
  let h: number;
  if ((o.resize_mode ?? 0) === 1) {
    const tw = o.upscaling_resize_w ?? 512;
    const th = o.upscaling_resize_h ?? 512;
    if (o.upscaling_crop ?? true) {
      const s = Math.max(tw / img.width, th / img.height);
      w = Math.round(img.width * s);
      h = Math.round(img.height * s);
      checkSize(w, h);
      const big = await resizeRgb(img, w, h, KERNELS[name as keyof typeof KERNELS]);
      const x = Math.floor((w - tw) / 2);
      const y = Math.floor((h - th) / 2);
      return crop(big, x, y, x + tw, y + th);
    }
    w = tw;
    h = th;
  } else {
    const s = o.upscaling_resize ?? 2;
    w = Math.round(img.width * s);
    h = Math.round(img.height * s);
  }
  checkSize(w, h);
  return resizeRgb(img, w, h, KERNELS[name as keyof typeof KERNELS]);
}

function checkSize(w: number, h: number): void {
  if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
    throw new ValidationError(
      'upscaling_resize',
      `upscaling_resize: the result ${w}x${h} must be 1 to ${MAX_SIDE} pixels a side`,
    );
  }
}

async function runExtras(
  b64: unknown,
  field: string,
  o: ExtrasOptions,
): Promise<{ png: Buffer; info: string }> {
  if ((o.gfpgan_visibility ?? 0) > 0 || (o.codeformer_visibility ?? 0) > 0) {
    throw new ValidationError(
      (o.gfpgan_visibility ?? 0) > 0 ? 'gfpgan_visibility' : 'codeformer_visibility',
      'face restoration (GFPGAN, CodeFormer) is not available yet; send visibility 0',
    );
  }
  const u1 = o.upscaler_1 ?? 'None';
  const u2 = o.upscaler_2 ?? 'None';
  checkUpscaler(u1, 'upscaler_1');
  checkUpscaler(u2, 'upscaler_2');
  const bytes = base64ImageBytes(b64, field);
  const decoded = await decodeBase64Image(b64, field);
  const src = flatten(decoded);
  let out = await upscaleOne(src, o, u1);
  const vis2 = o.extras_upscaler_2_visibility ?? 0;
  const fields: [string, string][] = [];
  if (u1 !== 'None') {
    fields.push([
      'Postprocess upscale ' + ((o.resize_mode ?? 0) === 1 ? 'to' : 'by'),
      (o.resize_mode ?? 0) === 1
        ? `${o.upscaling_resize_w ?? 512}x${o.upscaling_resize_h ?? 512}`
        : String(o.upscaling_resize ?? 2),
    ]);
    fields.push(['Postprocess upscaler', u1]);
  }
  if (u2 !== 'None' && vis2 > 0 && u1 !== 'None') {
    const second = await upscaleOne(src, o, u2);
    const d = out.data;
    for (let i = 0; i < d.length; i++) d[i] = Math.round(d[i]! * (1 - vis2) + second.data[i]! * vis2);
    fields.push(['Postprocess upscaler 2', u2]);
  }
  const info = fields.map(([k, v]) => `${k}: ${v}`).join(', ');
  let png = await encodePng(out);
  // The input's generation parameters travel with the image, as A1111 keeps them.
  const meta = await readImageMetadata(bytes).catch(() => null);
  if (meta?.parameters) png = addPngTextChunk(png, 'parameters', meta.parameters);
  if (info) png = addPngTextChunk(png, 'postprocessing', info);
  out = undefined as unknown as RgbImage;
  return { png, info };
}

const plugin: FastifyPluginAsync<ServerContext> = async (app) => {
  const tags = ['A1111'];
  app.post(
    '/sdapi/v1/png-info',
    {
      schema: {
        tags,
        summary: 'Generation parameters stored in an image',
        body: Type.Object({ image: Type.Optional(Type.String()) }, { additionalProperties: true }),
      },
    },
    async (req) => {
      const body = (req.body ?? {}) as { image?: string };
      if (!body.image) throw new UserError('Image not found', 2, 404);
      const bytes = base64ImageBytes(body.image, 'image');
      let meta;
      try {
        meta = await readImageMetadata(bytes);
      } catch (e) {
        throw new ValidationError('image', `Invalid encoded image: ${(e as Error).message}`);
      }
      const info = meta.parameters ?? '';
      return { info, items: meta.items, parameters: info ? parseInfotext(info) : {} };
    },
  );

  app.post(
    '/sdapi/v1/extra-single-image',
    { schema: { tags, summary: 'Upscale one image (None, Lanczos, Nearest)', body: SingleBody } },
    async (req) => {
      const body = (req.body ?? {}) as ExtrasOptions & { image?: string };
      const r = await runExtras(body.image, 'image', body);
      return { html_info: r.info ? `<p>${r.info}</p>` : '', image: r.png.toString('base64') };
    },
  );

  app.post(
    '/sdapi/v1/extra-batch-images',
    { schema: { tags, summary: 'Upscale a list of images (None, Lanczos, Nearest)', body: BatchBody } },
    async (req) => {
      const body = req.body as ExtrasOptions & { imageList: { data: string; name?: string }[] };
      const images: string[] = [];
      let info = '';
      for (let i = 0; i < body.imageList.length; i++) {
        const r = await runExtras(body.imageList[i]!.data, `imageList[${i}].data`, body);
        images.push(r.png.toString('base64'));
        info = r.info;
      }
      return { html_info: info ? `<p>${info}</p>` : '', images };
    },
  );

  app.post(
    '/sdapi/v1/interrogate',
    {
      schema: {
        tags,
        summary: 'Caption an image (no captioning model is available yet)',
        body: Type.Object(
          { image: Type.Optional(Type.String()), model: Type.Optional(Type.String({ default: 'clip' })) },
          { additionalProperties: true },
        ),
      },
    },
    async (req) => {
      const body = (req.body ?? {}) as { image?: string; model?: string };
      if (!body.image) throw new UserError('Image not found', 2, 404);
      await decodeBase64Image(body.image, 'image');
      // A1111 answers 404 "Model not found" for a model it does not have; we have none yet.
      throw new UserError(
        `Model not found: interrogation (${String(body.model ?? 'clip').slice(0, 50)}) is not available yet`,
        2,
        404,
      );
    },
  );
};

export default plugin;
