/** Images in A1111 request bodies: base64, optionally behind a `data:image/…;base64,` prefix. */
import { decodeImage, type DecodedImage } from '../image/images.js';
import { UserError } from '../util/errors.js';

/** Bytes of a base64 image string; UserError (422) naming `field` when it is not base64. */
export function base64ImageBytes(text: unknown, field: string): Buffer {
  if (typeof text !== 'string' || text.length === 0) throw invalid(field, 'an empty image');
  if (/^https?:\/\//i.test(text)) {
    throw new UserError(
      `${field}: image URLs are not fetched by this server; send the image as base64`,
      2,
      422,
    );
  }
  // A1111 strips a data URL prefix by splitting on ';' then ','.
  let b64 = text;
  if (b64.startsWith('data:')) {
    const comma = b64.indexOf(',');
    if (comma < 0) throw invalid(field, 'a data: URL without a comma');
    b64 = b64.slice(comma + 1);
  }
  b64 = b64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64) || b64.length % 4 === 1)
    throw invalid(field, 'text that is not base64');
  const bytes = Buffer.from(b64, b64.includes('-') || b64.includes('_') ? 'base64url' : 'base64');
  if (bytes.length === 0) throw invalid(field, 'an empty image');
  return bytes;
}

export async function decodeBase64Image(text: unknown, field: string): Promise<DecodedImage> {
  const bytes = base64ImageBytes(text, field);
  try {
    return await decodeImage(bytes, field);
  } catch (e) {
    throw invalid(field, e instanceof Error ? e.message : 'data that is not an image');
  }
}

function invalid(field: string, what: string): UserError {
  return new UserError(`Invalid encoded image: ${field} is ${what}`, 2, 422);
}
