/** Builders for hostile test inputs: a tiny pickle assembler and a stored-zip writer. */
import { closeSync, openSync, writeSync } from 'node:fs';

/** Concatenate pickle pieces: numbers are opcodes/bytes, strings are latin-1 text. */
export function bytesOf(...parts: (number | string | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else out.push(...p);
  }
  return Uint8Array.from(out);
}

export function u32le(n: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64le(n: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

/** BINUNICODE of a short ASCII string. */
export function str(s: string): Uint8Array {
  return bytesOf(0x58, u32le(s.length), s);
}

/** A pickle that rebuilds one tensor: `{name: _rebuild_tensor_v2(storage(cls, key, numel), offset, size, stride, False, OrderedDict())}`. */
export function tensorPickle(opts: {
  cls: string;
  key: string;
  numel: number;
  offset?: number;
  size: number[];
  stride: number[];
  name?: string;
}): Uint8Array {
  const tuple = (xs: number[]) =>
    bytesOf(0x28, ...xs.map((x) => bytesOf(0x4a, new Uint8Array(new Int32Array([x]).buffer))), 0x74);
  return bytesOf(
    0x80,
    2,
    0x7d, // EMPTY_DICT
    str(opts.name ?? 'w'),
    'ctorch._utils\n_rebuild_tensor_v2\n',
    0x28, // MARK (args)
    0x28,
    str('storage'),
    `ctorch\n${opts.cls}\n`,
    str(opts.key),
    str('cpu'),
    0x4a,
    new Uint8Array(new Int32Array([opts.numel]).buffer),
    0x74, // TUPLE
    0x51, // BINPERSID
    0x4a,
    new Uint8Array(new Int32Array([opts.offset ?? 0]).buffer),
    tuple(opts.size),
    tuple(opts.stride),
    0x89,
    'ccollections\nOrderedDict\n',
    0x29,
    0x52,
    0x74, // TUPLE (args)
    0x52, // REDUCE
    0x73, // SETITEM
    0x2e,
  );
}

export interface ZipSpec {
  name: string;
  data: Uint8Array;
  /** Compression method to declare (the data is written as given). */
  method?: number;
  /** Uncompressed size to declare, when lying. */
  declaredSize?: number;
}

/** A zip with stored entries (CRC left 0: our reader does not need it); `zip64` forces zip64 records. */
export function buildZip(entries: ZipSpec[], zip64 = false): Uint8Array {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const size = e.data.byteLength;
    const declared = e.declaredSize ?? size;
    const lfh = Buffer.alloc(30);
    lfh.writeUInt32LE(0x04034b50, 0);
    lfh.writeUInt16LE(zip64 ? 45 : 20, 4);
    lfh.writeUInt16LE(e.method ?? 0, 8);
    lfh.writeUInt32LE(zip64 ? 0xffffffff : size, 18);
    lfh.writeUInt32LE(zip64 ? 0xffffffff : declared, 22);
    lfh.writeUInt16LE(name.length, 26);
    const lextra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (zip64) {
      lextra.writeUInt16LE(1, 0);
      lextra.writeUInt16LE(16, 2);
      lextra.writeBigUInt64LE(BigInt(declared), 4);
      lextra.writeBigUInt64LE(BigInt(size), 12);
    }
    lfh.writeUInt16LE(lextra.length, 28);
    const local = Buffer.concat([lfh, name, lextra, Buffer.from(e.data)]);
    chunks.push(local);
    const cdh = Buffer.alloc(46);
    cdh.writeUInt32LE(0x02014b50, 0);
    cdh.writeUInt16LE(zip64 ? 45 : 20, 4);
    cdh.writeUInt16LE(zip64 ? 45 : 20, 6);
    cdh.writeUInt16LE(e.method ?? 0, 10);
    cdh.writeUInt32LE(zip64 ? 0xffffffff : size, 20);
    cdh.writeUInt32LE(zip64 ? 0xffffffff : declared, 24);
    cdh.writeUInt16LE(name.length, 28);
    const cextra = zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (zip64) {
      cextra.writeUInt16LE(1, 0);
      cextra.writeUInt16LE(24, 2);
      cextra.writeBigUInt64LE(BigInt(declared), 4);
      cextra.writeBigUInt64LE(BigInt(size), 12);
      cextra.writeBigUInt64LE(BigInt(offset), 20);
    }
    cdh.writeUInt16LE(cextra.length, 30);
    cdh.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    central.push(Buffer.concat([cdh, name, cextra]));
    offset += local.length;
  }
  const cd = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (zip64) {
    const z = Buffer.alloc(56);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4);
    z.writeBigUInt64LE(BigInt(entries.length), 24);
    z.writeBigUInt64LE(BigInt(entries.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(z, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...chunks, cd, ...tail, eocd]);
}

/**
 * A zip64 file written with positioned writes, where an entry without `data` is a hole of
 * `size` bytes (sparse on disk): lets a test put real entries beyond 4 GB cheaply.
 */
export function writeSparseZip64(
  path: string,
  entries: { name: string; size: number; data?: Uint8Array }[],
): void {
  const fd = openSync(path, 'w');
  try {
    let offset = 0;
    const central: Buffer[] = [];
    for (const e of entries) {
      const name = Buffer.from(e.name);
      const lfh = Buffer.alloc(30 + name.length + 20);
      lfh.writeUInt32LE(0x04034b50, 0);
      lfh.writeUInt16LE(45, 4);
      lfh.writeUInt32LE(0xffffffff, 18);
      lfh.writeUInt32LE(0xffffffff, 22);
      lfh.writeUInt16LE(name.length, 26);
      lfh.writeUInt16LE(20, 28);
      name.copy(lfh, 30);
      lfh.writeUInt16LE(1, 30 + name.length);
      lfh.writeUInt16LE(16, 32 + name.length);
      lfh.writeBigUInt64LE(BigInt(e.size), 34 + name.length);
      lfh.writeBigUInt64LE(BigInt(e.size), 42 + name.length);
      writeSync(fd, lfh, 0, lfh.length, offset);
      if (e.data) writeSync(fd, e.data, 0, e.data.byteLength, offset + lfh.length);
      const cdh = Buffer.alloc(46 + name.length + 28);
      cdh.writeUInt32LE(0x02014b50, 0);
      cdh.writeUInt16LE(45, 4);
      cdh.writeUInt16LE(45, 6);
      cdh.writeUInt32LE(0xffffffff, 20);
      cdh.writeUInt32LE(0xffffffff, 24);
      cdh.writeUInt16LE(name.length, 28);
      cdh.writeUInt16LE(28, 30);
      cdh.writeUInt32LE(0xffffffff, 42);
      name.copy(cdh, 46);
      const x = 46 + name.length;
      cdh.writeUInt16LE(1, x);
      cdh.writeUInt16LE(24, x + 2);
      cdh.writeBigUInt64LE(BigInt(e.size), x + 4);
      cdh.writeBigUInt64LE(BigInt(e.size), x + 12);
      cdh.writeBigUInt64LE(BigInt(offset), x + 20);
      central.push(cdh);
      offset += lfh.length + e.size;
    }
    const cd = Buffer.concat(central);
    const z = Buffer.alloc(56 + 20 + 22);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4);
    z.writeBigUInt64LE(BigInt(entries.length), 24);
    z.writeBigUInt64LE(BigInt(entries.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(offset), 48);
    z.writeUInt32LE(0x07064b50, 56);
    z.writeBigUInt64LE(BigInt(offset + cd.length), 64);
    z.writeUInt32LE(1, 72);
    z.writeUInt32LE(0x06054b50, 76);
    z.writeUInt16LE(0xffff, 84);
    z.writeUInt16LE(0xffff, 86);
    z.writeUInt32LE(0xffffffff, 88);
    z.writeUInt32LE(0xffffffff, 92);
    writeSync(fd, Buffer.concat([cd, z]), 0, cd.length + z.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** The pickle torch writes for `{name: contiguous F32 tensor}`: tensor i is storage key `String(i)`. */
export function stateDictPickle(tensors: { name: string; shape: number[] }[]): Uint8Array {
  const int = (x: number) => bytesOf(0x4a, new Uint8Array(new Int32Array([x]).buffer));
  const tuple = (xs: number[]) => bytesOf(0x28, ...xs.map(int), 0x74);
  const parts: Uint8Array[] = [bytesOf(0x80, 2, 0x7d, 0x28)]; // PROTO 2, EMPTY_DICT, MARK
  tensors.forEach(({ name, shape }, i) => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    parts.push(
      str(name),
      bytesOf('ctorch._utils\n_rebuild_tensor_v2\n', 0x28), // GLOBAL, MARK (args)
      bytesOf(0x28, str('storage'), 'ctorch\nFloatStorage\n', str(String(i)), str('cpu'), int(numel), 0x74),
      bytesOf(0x51, int(0), tuple(shape), tuple(stride), 0x89), // BINPERSID, offset, size, stride, False
      bytesOf('ccollections\nOrderedDict\n', 0x29, 0x52, 0x74, 0x52), // OrderedDict(), TUPLE, REDUCE
    );
  });
  parts.push(bytesOf(0x75, 0x2e)); // SETITEMS, STOP
  return bytesOf(...parts);
}
