/**
 * PNG chunks: reading them (bounds-checked, CRC-checked) and writing text chunks the way Pillow's
 * PngInfo.add_text does, which is how A1111 stores the infotext ("parameters").
 */
import { crc32, inflateSync } from 'node:zlib';

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Largest text we inflate from one zTXt/iTXt chunk; more is refused (a decompression bomb). */
export const MAX_TEXT_BYTES = 16 * 1024 * 1024;

export interface PngChunk {
  type: string;
  /** The chunk's data (a view into the file's bytes). */
  data: Uint8Array;
  /** Offset of the chunk's length field in the file. */
  offset: number;
  crcOk: boolean;
}

export function isPng(buf: Uint8Array): boolean {
  return buf.length >= 8 && PNG_SIGNATURE.equals(Buffer.from(buf.buffer, buf.byteOffset, 8));
}

/**
 * The chunks of a PNG, up to IEND. Stops (and reports why) at a truncated or impossible chunk
 * rather than reading past the end; never allocates more than the input.
 */
export function readPngChunks(buf: Uint8Array): { chunks: PngChunk[]; problems: string[] } {
  const chunks: PngChunk[] = [];
  const problems: string[] = [];
  if (!isPng(buf)) return { chunks, problems: ['not a PNG file (bad signature)'] };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 8;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) {
      problems.push(`truncated chunk header at byte ${pos}`);
      break;
    }
    const length = view.getUint32(pos);
    const type = String.fromCharCode(buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]);
    if (!/^[A-Za-z]{4}$/.test(type)) {
      problems.push(`invalid chunk type at byte ${pos}`);
      break;
    }
    if (length > 0x7fffffff || pos + 12 + length > buf.length) {
      problems.push(`chunk ${type} at byte ${pos} claims ${length} bytes, past the end of the file`);
      break;
    }
    const data = buf.subarray(pos + 8, pos + 8 + length);
    const stored = view.getUint32(pos + 8 + length);
    const crcOk = crc32(buf.subarray(pos + 4, pos + 8 + length)) === stored;
    if (!crcOk) problems.push(`chunk ${type} at byte ${pos} has a bad CRC`);
    chunks.push({ type, data, offset: pos, crcOk });
    pos += 12 + length;
    if (type === 'IEND') break;
  }
  return { chunks, problems };
}

/** One chunk's bytes: length, type, data, CRC-32 of type and data. */
export function makePngChunk(type: string, data: Uint8Array): Buffer {
  if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`invalid PNG chunk type ${JSON.stringify(type)}`);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function isLatin1(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\u0000-\u00ff]*$/.test(s);
}

function checkKeyword(key: string): Buffer {
  if (key.length < 1 || key.length > 79 || !isLatin1(key) || key.includes('\0')) {
    throw new Error(`invalid PNG text keyword ${JSON.stringify(key)}: 1-79 Latin-1 characters, no NUL`);
  }
  return Buffer.from(key, 'latin1');
}

/**
 * A text chunk as Pillow's PngInfo.add_text(key, text) writes it: tEXt with Latin-1 bytes when the
 * text is Latin-1, else an uncompressed iTXt with UTF-8 (so Cyrillic, CJK and emoji survive).
 */
export function makeTextChunk(key: string, text: string): Buffer {
  const k = checkKeyword(key);
  if (isLatin1(text))
    return makePngChunk('tEXt', Buffer.concat([k, Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0
  return makePngChunk('iTXt', Buffer.concat([k, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** Inserts chunks just before the first IDAT (where Pillow writes text chunks). */
export function insertPngChunks(png: Uint8Array, chunks: readonly Uint8Array[]): Buffer {
  const { chunks: existing, problems } = readPngChunks(png);
  const idat = existing.find((c) => c.type === 'IDAT');
  if (!idat || problems.length > 0) {
    throw new Error(`cannot add metadata to this PNG: ${problems[0] ?? 'it has no image data (IDAT)'}`);
  }
  const src = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  return Buffer.concat([src.subarray(0, idat.offset), ...chunks, src.subarray(idat.offset)]);
}

/** Adds one text chunk (tEXt or iTXt, as Pillow chooses) to a PNG. */
export function addPngTextChunk(png: Uint8Array, key: string, text: string): Buffer {
  return insertPngChunks(png, [makeTextChunk(key, text)]);
}

function inflateText(data: Uint8Array): Buffer {
  return inflateSync(data, { maxOutputLength: MAX_TEXT_BYTES });
}

/** A decoded text chunk: tEXt/zTXt are Latin-1, iTXt UTF-8 (compressed or not). */
export interface PngText {
  key: string;
  text: string;
  chunk: 'tEXt' | 'zTXt' | 'iTXt';
}

/**
 * Decodes a tEXt, zTXt or iTXt chunk. Throws an Error saying what is wrong for a malformed chunk
 * or one whose text inflates past MAX_TEXT_BYTES.
 */
export function decodeTextChunk(chunk: PngChunk): PngText {
  const d = chunk.data;
  const nul = d.indexOf(0);
  if (nul < 1 || nul > 79) throw new Error(`${chunk.type} chunk without a valid keyword`);
  const key = Buffer.from(d.subarray(0, nul)).toString('latin1');
  const rest = d.subarray(nul + 1);
  if (chunk.type === 'tEXt') return { key, text: Buffer.from(rest).toString('latin1'), chunk: 'tEXt' };
  if (chunk.type === 'zTXt') {
    if (rest.length < 1 || rest[0] !== 0) throw new Error(`zTXt "${key}": unknown compression method`);
    return { key, text: inflateText(rest.subarray(1)).toString('latin1'), chunk: 'zTXt' };
  }
  if (chunk.type === 'iTXt') {
    if (rest.length < 2) throw new Error(`iTXt "${key}" is truncated`);
    const compressed = rest[0];
    const method = rest[1];
    const langEnd = rest.indexOf(0, 2);
    const tkeyEnd = langEnd < 0 ? -1 : rest.indexOf(0, langEnd + 1);
    if (tkeyEnd < 0) throw new Error(`iTXt "${key}" is truncated`);
    const body = rest.subarray(tkeyEnd + 1);
    if (compressed === 0) return { key, text: Buffer.from(body).toString('utf8'), chunk: 'iTXt' };
    if (compressed !== 1 || method !== 0) throw new Error(`iTXt "${key}": unknown compression`);
    return { key, text: inflateText(body).toString('utf8'), chunk: 'iTXt' };
  }
  throw new Error(`${chunk.type} is not a text chunk`);
}

/** Width and height from the IHDR chunk. */
export function pngSize(chunks: readonly PngChunk[]): { width: number; height: number } | undefined {
  const ihdr = chunks[0]?.type === 'IHDR' ? chunks[0] : undefined;
  if (!ihdr || ihdr.data.length < 8) return undefined;
  const v = new DataView(ihdr.data.buffer, ihdr.data.byteOffset, ihdr.data.byteLength);
  return { width: v.getUint32(0), height: v.getUint32(4) };
}
