/**
 * The allow-list of Python globals a torch checkpoint may name, and what each becomes.
 * Everything here builds plain data; nothing resolves to code. A global that exists to run
 * code (os.system, builtins.eval, subprocess.*, …) refuses the whole file as malicious; any
 * other unknown global refuses it with the global's name so the user can report it.
 */
import { UnsafeFileError, UserError } from '../util/errors.js';
import {
  dictKey,
  isCallableGlobal,
  isInternal,
  markInternal,
  setKey,
  type PyGlobal,
  type PyObject,
} from './pickle.js';
import { DTYPE_BYTES, type DType } from './tensor.js';

/** Storage classes torch pickles, by the dtype of their elements. */
export const STORAGE_DTYPES: Record<string, DType> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** torch dtype objects (`torch.float16`) some files pickle as values. */
const TORCH_DTYPE_NAMES = new Set([
  'float64',
  'float32',
  'float16',
  'bfloat16',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
  'double',
  'float',
  'half',
  'long',
  'int',
]);

/** Modules whose every member exists to run code, reach the OS or load more code. */
const CODE_MODULES = new Set([
  'os',
  'posix',
  'nt',
  'posixpath',
  'ntpath',
  'subprocess',
  'runpy',
  'pty',
  'shutil',
  'socket',
  'sys',
  'importlib',
  'imp',
  'code',
  'codeop',
  'ctypes',
  'marshal',
  'pickle',
  '_pickle',
  'dill',
  'webbrowser',
  'multiprocessing',
  'platform',
  'pdb',
  'bdb',
  'timeit',
  'types',
  'operator',
  'functools',
  'asyncio',
  'threading',
  '_thread',
  'signal',
  'torch.hub',
  'torch.jit',
  'numpy.testing',
  'distutils',
  'setuptools',
  'pip',
  'tempfile',
  'pathlib',
  'io',
  '_io',
  'urllib',
  'http',
  'requests',
]);

const CODE_BUILTINS = new Set([
  'eval',
  'exec',
  'execfile',
  'compile',
  'open',
  'getattr',
  'setattr',
  'delattr',
  '__import__',
  'globals',
  'locals',
  'vars',
  'input',
  'breakpoint',
  'apply',
  'exit',
  'quit',
  'help',
  'reload',
  'file',
  'memoryview',
  'type',
  'super',
  'classmethod',
  'staticmethod',
  'property',
]);

export function isCodeRunningGlobal(module: string, name: string): boolean {
  const root = module.split('.')[0]!;
  if (CODE_MODULES.has(module) || CODE_MODULES.has(root)) return true;
  return module === 'builtins' && (CODE_BUILTINS.has(name) || name.startsWith('__'));
}

/** A storage handed out by the checkpoint reader's persistent_load. */
export interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: DType;
  /** Elements in this storage. */
  readonly numel: number;
  /** Absolute file offset of element 0 (set once known: legacy files learn it after the pickles). */
  fileOffset: number;
}

/** A tensor view over a storage, not yet read: shape and strides already checked against the storage. */
export class LazyTensor {
  constructor(
    readonly dtype: DType,
    readonly shape: number[],
    readonly stride: number[],
    readonly storageOffset: number,
    readonly storage: StorageRef,
  ) {
    Object.freeze(this);
  }
}

export interface GlobalContext {
  source: string;
  /** Largest contiguous size a view may have when it is bigger than its storage (broadcast views). */
  maxExpandedBytes: number;
}

function global(module: string, name: string, call?: PyGlobal['call'], extra: object = {}): PyGlobal {
  return markInternal({ kind: 'global' as const, module, name, call, ...extra });
}

function asIntList(v: unknown, what: string, source: string): number[] {
  if (!Array.isArray(v) || !v.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw new UserError(`${source}: tensor ${what} is not a list of non-negative integers`);
  }
  return v as number[];
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, checked before anything is read. */
function rebuildTensor(args: unknown[], ctx: GlobalContext): LazyTensor {
  const [storage, offset, size, stride] = args;
  if (!isInternal(storage) || (storage as StorageRef).kind !== 'storage') {
    throw new UserError(`${ctx.source}: tensor rebuilt from something that is not a storage`);
  }
  const st = storage as StorageRef;
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new UserError(`${ctx.source}: tensor has an invalid storage offset`);
  }
  const shape = asIntList(size, 'size', ctx.source);
  const strides = asIntList(stride, 'stride', ctx.source);
  if (shape.length !== strides.length)
    throw new UserError(`${ctx.source}: tensor size and stride differ in length`);
  let numel = 1;
  let maxIndex = offset;
  for (let i = 0; i < shape.length; i++) {
    numel *= shape[i]!;
    if (shape[i]! > 0) maxIndex += (shape[i]! - 1) * strides[i]!;
  }
  const eb = DTYPE_BYTES[st.dtype];
  if (numel > 0) {
    if (!Number.isSafeInteger(maxIndex) || maxIndex >= st.numel) {
      throw new UnsafeFileError(
        `${ctx.source}: a tensor of shape [${shape}] reaches element ${maxIndex} of a ${st.numel}-element storage`,
      );
    }
    const bytes = numel * eb;
    if (!Number.isSafeInteger(bytes) || (bytes > st.numel * eb && bytes > ctx.maxExpandedBytes)) {
      throw new UnsafeFileError(
        `${ctx.source}: a tensor of shape [${shape}] (${bytes} bytes) expands a ${st.numel * eb}-byte storage beyond the limit`,
      );
    }
  }
  return new LazyTensor(st.dtype, [...shape], [...strides], offset, st);
}

function latin1Bytes(s: unknown, source: string): Uint8Array {
  if (typeof s !== 'string') throw new UserError(`${source}: _codecs.encode of a non-string`);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new UserError(`${source}: _codecs.encode latin-1 of a non-latin-1 character`);
    out[i] = c;
  }
  return out;
}

/** A numpy scalar from its dtype code and raw bytes (numpy.core.multiarray.scalar). */
function numpyScalar(dtype: unknown, raw: unknown, source: string): number | bigint | boolean {
  const code =
    typeof dtype === 'object' && dtype !== null ? (dtype as { numpyDType?: unknown }).numpyDType : undefined;
  if (typeof code !== 'string' || !(raw instanceof Uint8Array)) {
    throw new UserError(`${source}: unsupported numpy scalar`);
  }
  const c = code.replace(/^[<>=|]/, '');
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const want: Record<string, number> = {
    f8: 8,
    f4: 4,
    i8: 8,
    i4: 4,
    i2: 2,
    i1: 1,
    u8: 8,
    u4: 4,
    u2: 2,
    u1: 1,
    b1: 1,
  };
  if (!(c in want) || raw.byteLength !== want[c])
    throw new UserError(`${source}: unsupported numpy scalar type ${code}`);
  switch (c) {
    case 'f8':
      return dv.getFloat64(0, true);
    case 'f4':
      return dv.getFloat32(0, true);
    case 'i8':
      return narrowBig(dv.getBigInt64(0, true));
    case 'u8':
      return narrowBig(dv.getBigUint64(0, true));
    case 'i4':
      return dv.getInt32(0, true);
    case 'u4':
      return dv.getUint32(0, true);
    case 'i2':
      return dv.getInt16(0, true);
    case 'u2':
      return dv.getUint16(0, true);
    case 'i1':
      return dv.getInt8(0);
    case 'b1':
      return raw[0] !== 0;
    default:
      return raw[0]!;
  }
}

function narrowBig(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** An allowed class whose instances are just data: REDUCE/NEWOBJ make an empty object, BUILD fills it. */
function inertClass(module: string, name: string): PyGlobal {
  return global(module, name, () => ({}) as PyObject);
}

function withSetState(obj: PyObject, setState: (s: unknown) => void): PyObject {
  Object.defineProperty(obj, '__setstate__', { value: setState, enumerable: false });
  return obj;
}

/** Build the `findGlobal` function for the unpickler. */
export function torchGlobalResolver(ctx: GlobalContext): (module: string, name: string) => PyGlobal {
  const src = ctx.source;
  return (module, name) => {
    const full = `${module}.${name}`;
    if (module === 'torch._utils') {
      if (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor') {
        return global(module, name, (args) => rebuildTensor(args, ctx));
      }
      if (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state') {
        return global(module, name, (args) => args[0]);
      }
    }
    if (module === 'torch._tensor' && name === '_rebuild_from_type_v2') {
      // (func, new_type, args, state): the tensor subclass is dropped, the tensor kept.
      return global(module, name, (args) => {
        const [func, , fargs] = args;
        if (!isCallableGlobal(func) || !Array.isArray(fargs)) {
          throw new UserError(`${src}: malformed _rebuild_from_type_v2`);
        }
        return func.call(fargs);
      });
    }
    if (module === 'torch' || module === 'torch.storage') {
      if (name in STORAGE_DTYPES)
        return global(module, name, undefined, { storageDType: STORAGE_DTYPES[name] });
      if (name === 'Size')
        return global(module, name, (args) => (Array.isArray(args[0]) ? [...args[0]] : []));
      if (name === 'device') return global(module, name, (args) => args.map(String).join(':'));
      if (TORCH_DTYPE_NAMES.has(name)) return global(module, name);
    }
    if (module === 'torch.nn.parameter' && name === 'Parameter') {
      return global(module, name, (args) => args[0]);
    }
    if (module === 'torch.nn.modules.container' && (name === 'ParameterDict' || name === 'ParameterList')) {
      return inertClass(module, name);
    }
    if (module === 'collections' && name === 'OrderedDict') {
      return global(module, name, (args) => {
        const d: Record<string, unknown> = {};
        if (Array.isArray(args[0])) {
          for (const pair of args[0]) {
            if (Array.isArray(pair) && pair.length === 2) setKey(d, dictKey(pair[0], src), pair[1]);
          }
        }
        return d;
      });
    }
    if (module === 'builtins') {
      if (name === 'set' || name === 'frozenset' || name === 'list' || name === 'tuple') {
        return global(module, name, (args) => (Array.isArray(args[0]) ? [...args[0]] : []));
      }
      if (name === 'bytearray' || name === 'bytes') {
        return global(module, name, (args) => {
          const a = args[0];
          if (a === undefined) return new Uint8Array(0);
          if (a instanceof Uint8Array) return a.slice();
          if (typeof a === 'string') return latin1Bytes(a, src);
          if (Array.isArray(a) && a.every((x) => typeof x === 'number' && x >= 0 && x <= 255))
            return Uint8Array.from(a);
          throw new UserError(`${src}: unsupported ${name}() argument`);
        });
      }
      if (name === 'slice') {
        return global(module, name, (args) => ({
          start: args[0] ?? null,
          stop: args[1] ?? null,
          step: args[2] ?? null,
        }));
      }
      if (name === 'object') return global(module, name);
      if (name === 'complex')
        return global(module, name, (args) => ({ real: args[0] ?? 0, imag: args[1] ?? 0 }));
    }
    if (module === 'copyreg' && name === '_reconstructor') {
      // (cls, base, state): allowed only for our inert classes built on object.
      return global(module, name, (args) => {
        const cls = args[0];
        if (!isCallableGlobal(cls)) throw new UnsafeFileError(`${src}: _reconstructor of a refused class`);
        return cls.call([]);
      });
    }
    if (module === '_codecs' && name === 'encode') {
      return global(module, name, (args) => {
        const enc = String(args[1] ?? 'utf-8').toLowerCase();
        if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1') return latin1Bytes(args[0], src);
        if (enc === 'utf-8' || enc === 'utf8') return new TextEncoder().encode(String(args[0]));
        throw new UserError(`${src}: _codecs.encode with unsupported encoding ${enc}`);
      });
    }
    if (module === 'numpy.core.multiarray' || module === 'numpy._core.multiarray') {
      if (name === 'scalar') return global(module, name, (args) => numpyScalar(args[0], args[1], src));
      if (name === '_reconstruct') {
        return global(module, name, () =>
          withSetState({}, function (this: PyObject, s: unknown) {
            // (version, shape, dtype, is_fortran, raw): kept as inert data.
            if (Array.isArray(s)) {
              setKey(this, 'shape', s[1]);
              setKey(this, 'dtype', s[2]);
              setKey(this, 'data', s[4]);
            }
          }),
        );
      }
    }
    if (module === 'numpy') {
      if (name === 'dtype') {
        return global(module, name, (args) => {
          const obj: PyObject = { numpyDType: String(args[0]) };
          return withSetState(obj, (s) => {
            if (
              Array.isArray(s) &&
              typeof s[1] === 'string' &&
              s[1] !== '|' &&
              s[1] !== '=' &&
              s[1] !== '<'
            ) {
              obj.numpyDType = `${s[1]}${obj.numpyDType as string}`; // big-endian: refused by numpyScalar
            }
          });
        });
      }
      if (name === 'ndarray') return inertClass(module, name);
    }
    if (module === 'pytorch_lightning.callbacks.model_checkpoint' && name === 'ModelCheckpoint') {
      return inertClass(module, name);
    }
    if (module === 'pytorch_lightning.callbacks' && name === 'model_checkpoint') return global(module, name);
    if (isCodeRunningGlobal(module, name)) {
      throw new UnsafeFileError(
        `${src}: refused as malicious: its pickle calls ${full}, which runs code. Do not use this file; delete it.`,
      );
    }
    throw new UnsafeFileError(
      `${src}: refused: its pickle needs the Python global ${full}, which is not allowed in a model file. ` +
        'Convert the file to .safetensors with a trusted tool if you know where it comes from.',
    );
  };
}
