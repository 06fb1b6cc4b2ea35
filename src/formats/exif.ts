/**
 * EXIF UserComment in JPEG and WebP files, as A1111 writes the infotext there:
 * `piexif.insert(piexif.dump({"Exif": {UserComment: UserComment.dump(text, encoding="unicode")}}))`
 * — a big-endian TIFF block whose Exif IFD holds tag 0x9286 = "UNICODE\0" + UTF-16BE text.
 * Reading accepts any byte order and the ASCII/JIS/UNICODE prefixes piexif knows.
 */

const TAG_EXIF_IFD = 0x8769;
const TAG_USER_COMMENT = 0x9286;
const TYPE_LONG = 4;
const TYPE_UNDEFINED = 7;
const TYPE_SIZES: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
};
const MAX_IFD_ENTRIES = 4096;

const PREFIX_UNICODE = Buffer.from('UNICODE\0', 'latin1');
const PREFIX_ASCII = Buffer.from('ASCII\0\0\0', 'latin1');
const PREFIX_JIS = Buffer.from('JIS\0\0\0\0\0', 'latin1');
const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');

/** UTF-16BE bytes of a string (Node has only little-endian UTF-16). */
function utf16be(text: string): Buffer {
  const b = Buffer.from(text, 'utf16le');
  b.swap16();
  return b;
}

/** piexif.helper.UserComment.dump(text, encoding="unicode"). */
export function userCommentBytes(text: string): Buffer {
  return Buffer.concat([PREFIX_UNICODE, utf16be(text)]);
}

/**
 * piexif.helper.UserComment.load, with A1111's fallback: an unknown prefix or undecodable body is
 * read as UTF-8 with bad bytes dropped.
 */
export function decodeUserComment(data: Uint8Array): string {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const prefix = b.subarray(0, 8);
  const body = b.subarray(8);
  try {
    if (prefix.equals(PREFIX_UNICODE)) return new TextDecoder('utf-16be', { fatal: true }).decode(body);
    if (prefix.equals(PREFIX_ASCII)) {
      if (body.some((c) => c > 0x7f)) throw new Error('not ASCII');
      return body.toString('latin1');
    }
    if (prefix.equals(PREFIX_JIS)) return new TextDecoder('shift_jis', { fatal: true }).decode(body);
  } catch {
    // fall through to A1111's fallback
  }
  return new TextDecoder('utf-8').decode(b).replaceAll('\ufffd', '');
}

/** The TIFF block piexif.dump writes for `{"Exif": {UserComment: bytes}}` (big-endian, as piexif). */
export function exifTiffWithUserComment(comment: Uint8Array): Buffer {
  const exifIfdOffset = 8 + 2 + 12 + 4;
  const dataOffset = exifIfdOffset + 2 + 12;
  const out = Buffer.alloc(dataOffset + comment.length);
  out.write('MM\0*', 0, 'latin1');
  out.writeUInt32BE(8, 4);
  // IFD0: one entry pointing at the Exif IFD, then "no next IFD".
  out.writeUInt16BE(1, 8);
  out.writeUInt16BE(TAG_EXIF_IFD, 10);
  out.writeUInt16BE(TYPE_LONG, 12);
  out.writeUInt32BE(1, 14);
  out.writeUInt32BE(exifIfdOffset, 18);
  out.writeUInt32BE(0, 22);
  // Exif IFD: UserComment (piexif writes no next-IFD field after a sub-IFD).
  out.writeUInt16BE(1, exifIfdOffset);
  out.writeUInt16BE(TAG_USER_COMMENT, exifIfdOffset + 2);
  out.writeUInt16BE(TYPE_UNDEFINED, exifIfdOffset + 4);
  out.writeUInt32BE(comment.length, exifIfdOffset + 6);
  if (comment.length <= 4) {
    out.set(comment, exifIfdOffset + 10);
    return out.subarray(0, dataOffset);
  }
  out.writeUInt32BE(dataOffset, exifIfdOffset + 10);
  out.set(comment, dataOffset);
  return out;
}

interface IfdEntry {
  tag: number;
  type: number;
  count: number;
  /** The value bytes (inline or at the offset), bounds-checked. */
  value: Uint8Array;
}

function readIfd(tiff: Uint8Array, offset: number, le: boolean): IfdEntry[] {
  const v = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (offset < 8 || offset + 2 > tiff.length) return [];
  const n = v.getUint16(offset, le);
  if (n > MAX_IFD_ENTRIES) return [];
  const entries: IfdEntry[] = [];
  for (let i = 0; i < n; i++) {
    const p = offset + 2 + 12 * i;
    if (p + 12 > tiff.length) break;
    const tag = v.getUint16(p, le);
    const type = v.getUint16(p + 2, le);
    const count = v.getUint32(p + 4, le);
    const size = (TYPE_SIZES[type] ?? 0) * count;
    if (size === 0 && count !== 0) continue;
    let start = p + 8;
    if (size > 4) start = v.getUint32(p + 8, le);
    if (start + size > tiff.length) continue;
    entries.push({ tag, type, count, value: tiff.subarray(start, start + size) });
  }
  return entries;
}

/**
 * The raw UserComment bytes of an EXIF block (TIFF, or with the "Exif\0\0" header JPEG uses),
 * or undefined when there is none. Never throws on malformed data.
 */
export function readUserCommentFromExif(exif: Uint8Array): Uint8Array | undefined {
  let tiff = exif;
  if (tiff.length >= 6 && EXIF_HEADER.equals(Buffer.from(tiff.buffer, tiff.byteOffset, 6)))
    tiff = tiff.subarray(6);
  if (tiff.length < 8) return undefined;
  const order = String.fromCharCode(tiff[0], tiff[1]);
  if (order !== 'MM' && order !== 'II') return undefined;
  const le = order === 'II';
  const v = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (v.getUint16(2, le) !== 42) return undefined;
  const ifd0 = readIfd(tiff, v.getUint32(4, le), le);
  const ptr = ifd0.find((e) => e.tag === TAG_EXIF_IFD && e.value.length >= 4);
  if (!ptr) return undefined;
  const exifOffset = new DataView(ptr.value.buffer, ptr.value.byteOffset, 4).getUint32(0, le);
  return readIfd(tiff, exifOffset, le).find((e) => e.tag === TAG_USER_COMMENT)?.value;
}

// --- JPEG ---------------------------------------------------------------------------------------

interface JpegSegment {
  marker: number;
  /** Offset of the 0xFF marker byte. */
  offset: number;
  /** Total bytes including marker and length. */
  size: number;
  payload: Uint8Array;
}

/** Marker segments of a JPEG up to the start of scan; bounds-checked. */
export function readJpegSegments(buf: Uint8Array): JpegSegment[] {
  const segs: JpegSegment[] = [];
  if (buf.length < 4 || buf[0] !== 0xff || buf[1] !== 0xd8) return segs;
  let pos = 2;
  while (pos + 4 <= buf.length) {
    if (buf[pos] !== 0xff) break;
    const marker = buf[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2;
      continue;
    }
    const len = (buf[pos + 2] << 8) | buf[pos + 3];
    if (len < 2 || pos + 2 + len > buf.length) break;
    segs.push({ marker, offset: pos, size: 2 + len, payload: buf.subarray(pos + 4, pos + 2 + len) });
    pos += 2 + len;
  }
  return segs;
}

function isExifApp1(s: JpegSegment): boolean {
  return (
    s.marker === 0xe1 && s.payload.length >= 6 && EXIF_HEADER.equals(Buffer.from(s.payload.subarray(0, 6)))
  );
}

/** The first APP1 "Exif" block of a JPEG (as Pillow's info["exif"]). */
export function jpegExif(buf: Uint8Array): Uint8Array | undefined {
  return readJpegSegments(buf).find(isExifApp1)?.payload;
}

/** The JPEG comment (COM) segment, as Pillow's info["comment"]. */
export function jpegComment(buf: Uint8Array): Uint8Array | undefined {
  return readJpegSegments(buf).find((s) => s.marker === 0xfe)?.payload;
}

/**
 * Puts an EXIF APP1 segment into a JPEG as piexif.insert does: it replaces an existing Exif APP1,
 * else the JFIF APP0 right after SOI, else goes right after SOI.
 */
export function insertJpegExif(jpeg: Uint8Array, tiff: Uint8Array): Buffer {
  const payload = Buffer.concat([EXIF_HEADER, tiff]);
  if (payload.length + 2 > 0xffff) throw new Error('EXIF data too large for a JPEG APP1 segment (64 kB)');
  const app1 = Buffer.alloc(4 + payload.length);
  app1[0] = 0xff;
  app1[1] = 0xe1;
  app1.writeUInt16BE(payload.length + 2, 2);
  app1.set(payload, 4);
  const src = Buffer.from(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
  const segs = readJpegSegments(src);
  if (src.length < 4 || src[0] !== 0xff || src[1] !== 0xd8) throw new Error('not a JPEG file');
  const first = segs[0];
  const second = segs[1];
  let drop: JpegSegment[] = [];
  if (first && first.offset === 2 && first.marker === 0xe0 && second && isExifApp1(second))
    drop = [first, second];
  else if (first && first.offset === 2 && (first.marker === 0xe0 || isExifApp1(first))) drop = [first];
  const end = drop.length ? drop[drop.length - 1].offset + drop[drop.length - 1].size : 2;
  return Buffer.concat([src.subarray(0, 2), app1, src.subarray(end)]);
}

// --- WebP ---------------------------------------------------------------------------------------

interface RiffChunk {
  type: string;
  offset: number;
  data: Uint8Array;
}

export function isWebp(buf: Uint8Array): boolean {
  return (
    buf.length >= 12 &&
    Buffer.from(buf.subarray(0, 4)).toString('latin1') === 'RIFF' &&
    Buffer.from(buf.subarray(8, 12)).toString('latin1') === 'WEBP'
  );
}

export function readWebpChunks(buf: Uint8Array): RiffChunk[] {
  const out: RiffChunk[] = [];
  if (!isWebp(buf)) return out;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const type = Buffer.from(buf.subarray(pos, pos + 4)).toString('latin1');
    const len = v.getUint32(pos + 4, true);
    if (pos + 8 + len > buf.length) break;
    out.push({ type, offset: pos, data: buf.subarray(pos + 8, pos + 8 + len) });
    pos += 8 + len + (len & 1);
  }
  return out;
}

export function webpExif(buf: Uint8Array): Uint8Array | undefined {
  return readWebpChunks(buf).find((c) => c.type === 'EXIF')?.data;
}

function riffChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + data.length + (data.length & 1));
  out.write(type, 0, 'latin1');
  out.writeUInt32LE(data.length, 4);
  out.set(data, 8);
  return out;
}

/** Canvas size and alpha of a simple (VP8/VP8L) WebP, from its bitstream header. */
function webpImageInfo(chunks: RiffChunk[]): { width: number; height: number; alpha: boolean } {
  const vp8 = chunks.find((c) => c.type === 'VP8 ');
  if (vp8 && vp8.data.length >= 10 && vp8.data[3] === 0x9d && vp8.data[4] === 0x01 && vp8.data[5] === 0x2a) {
    const d = vp8.data;
    return { width: (d[6] | (d[7] << 8)) & 0x3fff, height: (d[8] | (d[9] << 8)) & 0x3fff, alpha: false };
  }
  const vp8l = chunks.find((c) => c.type === 'VP8L');
  if (vp8l && vp8l.data.length >= 5 && vp8l.data[0] === 0x2f) {
    const b = new DataView(vp8l.data.buffer, vp8l.data.byteOffset + 1, 4).getUint32(0, true);
    return { width: (b & 0x3fff) + 1, height: ((b >>> 14) & 0x3fff) + 1, alpha: ((b >>> 28) & 1) === 1 };
  }
  throw new Error('unsupported WebP: no VP8/VP8L image data');
}

/**
 * Adds (or replaces) the EXIF chunk of a WebP as piexif.insert does: the file becomes the
 * extended format (VP8X with the EXIF flag) and the EXIF chunk follows the image data.
 */
export function insertWebpExif(webp: Uint8Array, tiff: Uint8Array): Buffer {
  const chunks = readWebpChunks(webp);
  if (chunks.length === 0) throw new Error('not a WebP file');
  let vp8x = chunks.find((c) => c.type === 'VP8X');
  const rest = chunks.filter((c) => c.type !== 'VP8X' && c.type !== 'EXIF');
  let header: Buffer;
  if (vp8x && vp8x.data.length >= 10) {
    header = Buffer.from(vp8x.data);
    header[0] |= 0x08;
  } else {
    vp8x = undefined;
    const info = webpImageInfo(chunks);
    header = Buffer.alloc(10);
    header[0] = 0x08 | (info.alpha ? 0x10 : 0);
    header.writeUIntLE(info.width - 1, 4, 3);
    header.writeUIntLE(info.height - 1, 7, 3);
  }
  // EXIF goes after the image data and before XMP, as the WebP container spec orders them.
  const xmp = rest.filter((c) => c.type === 'XMP ');
  const body = [
    riffChunk('VP8X', header),
    ...rest.filter((c) => c.type !== 'XMP ').map((c) => riffChunk(c.type, c.data)),
    riffChunk('EXIF', tiff),
    ...xmp.map((c) => riffChunk(c.type, c.data)),
  ];
  const payload = Buffer.concat([Buffer.from('WEBP', 'latin1'), ...body]);
  const head = Buffer.alloc(8);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}
